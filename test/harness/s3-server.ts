/**
 * A real S3 API for the anchor tests: s3rver 3.7.1 in this process, on 127.0.0.1 only, storing in
 * a temporary directory that stop() removes. s3rver accepts the access key id `S3RVER` (any
 * secret: it does not check SigV4 signatures) and refuses other key ids with InvalidAccessKeyId.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

export const S3RVER_ACCESS_KEY_ID = 'S3RVER';
export const S3RVER_SECRET_ACCESS_KEY = 'S3RVER';

export interface S3TestServer {
  endpoint: string;
  port: number;
  bucket: string;
  /** Where s3rver keeps objects (to tamper with one behind the API's back, if a test wants). */
  directory: string;
  stop(keepObjects?: boolean): Promise<void>;
}

export async function startS3Server(opts: { bucket?: string; port?: number; directory?: string } = {}): Promise<S3TestServer> {
  const bucket = opts.bucket ?? 'egress-anchors';
  const directory = opts.directory ?? mkdtempSync(path.join(os.tmpdir(), 'pg-egress-s3rver-'));
  // vhostBuckets off: path-style requests only, so a Host header never names a bucket.
  const server = new S3rver({ address: '127.0.0.1', port: opts.port ?? 0, silent: true, directory, vhostBuckets: false, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  let stopped = false;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    bucket,
    directory,
    async stop(keepObjects = false) {
      if (stopped) return;
      stopped = true;
      const closing = server.close();
      // An outage must be one: a busy client's keep-alive connections would go on being served,
      // and close() would wait for them to go idle (which a daemon uploading every second never does).
      (server as unknown as { httpServer?: { closeAllConnections?: () => void } }).httpServer?.closeAllConnections?.();
      await closing;
      // keepObjects: an outage; a server started again on the same port and directory has them.
      if (!keepObjects) rmSync(directory, { recursive: true, force: true });
    },
  };
}
