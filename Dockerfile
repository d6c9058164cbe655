# pg-egress daemon image (README "Docker and Kubernetes").
#   docker build -t pg-egress:0.1.0 .
#   docker run -d --name pg-egress --stop-timeout 60 -p 8080:8080 \
#     -v pg-egress-data:/var/lib/pg-egress -v "$PWD/cdc.yml:/etc/pg-egress/cdc.yml:ro" \
#     -e PGPASSWORD -e NEAR_PRIVATE_KEY -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY pg-egress:0.1.0
# cdc.yml must set output.dir: /var/lib/pg-egress (a relative one resolves under /etc/pg-egress),
# keep http.port: 8080 (the HEALTHCHECK below and the Kubernetes probes use it) and set http.host:
# 0.0.0.0 for -p to reach the endpoints (the default 127.0.0.1 is the container's own loopback).
# test/unit/deploy.test.ts checks this file's rules and builds the final stage by hand.

# ---- build: compile TypeScript, bundle the command (scripts/bundle.mjs) and build the addon ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
# node-gyp's toolchain for native/ (Merkle hashing, the COPY path; without it pg-egress falls back to
# node:crypto and zlib), and ISA-L and libdeflate, which the addon links when their headers are there.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ libisal-dev libdeflate-dev && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# No dependency install scripts: the only one is secp256k1's optional native build (near-api-js
# falls back to JS). Our own addon is built explicitly below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY binding.gyp ./
COPY native ./native
RUN node native/build.mjs
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/bundle.mjs ./scripts/
COPY src ./src
RUN npm run build

# ---- final: production dependencies, compiled code, migrations ----
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# The shared libraries the addon was linked with in the build stage (ISA-L's igzip, libdeflate).
RUN apt-get update && apt-get install -y --no-install-recommends libisal2 libdeflate0 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release/pg_egress_sha256.node ./build/Release/
COPY binding.gyp ./
COPY native ./native
COPY sql ./sql
COPY cdc.example.yml ./
# `pg-egress` on PATH (what `npm install -g` would make); the output folder owned by the runtime
# user (uid/gid 1000 is the base image's `node` user; numeric so runAsNonRoot can check it).
RUN chmod 0755 /app/dist/bundle/bin.js \
 && ln -s /app/dist/bundle/bin.js /usr/local/bin/pg-egress \
 && mkdir -p /var/lib/pg-egress /etc/pg-egress \
 && chown 1000:1000 /var/lib/pg-egress \
 && chmod 0700 /var/lib/pg-egress
USER 1000:1000
VOLUME ["/var/lib/pg-egress"]
EXPOSE 8080
# Liveness of the daemon's HTTP server (http.port). No curl in slim images: node's own fetch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/health').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
# SIGTERM finishes the flush in progress and exits 0 within 30 s: stop with a longer timeout
# (docker stop -t 60, --stop-timeout 60, terminationGracePeriodSeconds: 60).
STOPSIGNAL SIGTERM
ENTRYPOINT ["pg-egress"]
CMD ["run", "--config", "/etc/pg-egress/cdc.yml"]
