# syntax=docker/dockerfile:1
# One image, two entrypoints: the webhook (default) and the reloader sidecar it injects
# (`args: [reloader, ...]`). test/build/production-artefact.test.ts builds and runs the same artefact
# without Docker: production dependencies only, the compiled dist/, Node 24.
ARG NODE_IMAGE=node:24-bookworm-slim

# Compile TypeScript to dist/. --ignore-scripts: the `node` devDependency (a Node 24 binary for npm scripts
# on machines with an older Node) is not installed; this image already runs Node 24.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies only: no TypeScript, no test tools, and not the `node` devDependency.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE}
# The runtime needs node alone; npm, npx, corepack and yarn are attack surface it never uses.
RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*
ENV NODE_ENV=production
WORKDIR /app
# package.json: "type": "module" for dist/*.js. Everything stays owned by root and read-only to the user.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["webhook"]
LABEL org.opencontainers.image.title="config-reloader-injector" \
      org.opencontainers.image.description="Mutating admission webhook that injects a config-reloader sidecar, and that sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
