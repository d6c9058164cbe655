# pg-egress daemon image. Build: docker build -t pg-egress .
# Run:   docker run -v /data/egress:/egress -v $PWD/cdc.yml:/etc/pg-egress/cdc.yml -e PGPASSWORD pg-egress
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json cdc.example.yml ./
COPY sql ./sql
RUN mkdir -p /egress && chown node:node /egress
USER node
VOLUME ["/egress"]
ENTRYPOINT ["node", "/app/dist/cli/bin.js"]
CMD ["run", "--config", "/etc/pg-egress/cdc.yml"]
