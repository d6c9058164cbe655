/**
 * One root's membership changes within a flush window, collected from 'pg-egress:partitions'
 * messages (sql/007) in stream order, and turned into its partitions.yml at the flush.
 */
import type { Lsn } from '../lsn.js';
import { changeLsn, partitionsDoc, type LeafDoc, type MembershipChange, type MembershipKind, type PartitionsDoc, type TableRef } from '../output/partitions.js';

/** The message's content: oids arrive as JSON strings (jsonb renders oid as text). */
export interface PartitionsMessage {
  publication: string;
  root: { schema: string; name: string; oid: number | string };
  partitions: { schema: string; name: string; oid: number | string; parent: { schema: string; name: string }; bounds: string | null }[];
  changes: { kind: MembershipKind; schema: string; name: string; oid: number | string }[];
  command_tag: string | null;
  command: string | null;
}

export class PartitionWindow {
  private root: TableRef | null = null;
  private leaves: LeafDoc[] = [];
  private readonly changes: MembershipChange[] = [];

  /** Adds one message, committed at `lsn`: its leaves replace the earlier ones (they are the state after it). */
  add(m: PartitionsMessage, lsn: Lsn): void {
    this.root = { schema: m.root.schema, name: m.root.name, oid: Number(m.root.oid) };
    this.leaves = m.partitions.map((p) => ({ schema: p.schema, name: p.name, oid: Number(p.oid), parent: { schema: p.parent.schema, name: p.parent.name }, bounds: p.bounds ?? '' }));
    const at = changeLsn(lsn);
    for (const c of m.changes) this.changes.push({ lsn: at, kind: c.kind, schema: c.schema, name: c.name, oid: Number(c.oid) });
  }

  doc(generatedAt: Date): PartitionsDoc | null {
    return this.root ? partitionsDoc(this.root, this.leaves, this.changes, generatedAt) : null;
  }
}

/** ddl.sql's line for a change that pg-egress's own check found (first appearance, or DDL capture off). */
export function foundByCheck(m: PartitionsMessage): string {
  const what = m.changes.length ? m.changes.map((c) => `${c.kind} ${c.schema}.${c.name}`).join(', ') : 'no partitions';
  return `partitions of ${m.root.schema}.${m.root.name} as found by pg-egress (${what})`;
}
