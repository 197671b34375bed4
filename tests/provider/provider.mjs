// A real OAuth 2.0 / OpenID Connect authorization server for the rmcp-authz tests:
// oidc-provider (panva's certified OpenID Connect provider), issuing JWT access tokens
// (RFC 9068, `typ: at+jwt`) through the client-credentials grant with RFC 8707 resource
// indicators, publishing its keys at a JWKS endpoint and answering token introspection
// (RFC 7662).
//
//   node tests/provider/provider.mjs --port 0 --keys KEYS.json [--issuer-host 127.0.0.1] [--rotate]
//
// --port P          port to listen on (0 picks a free one); the issuer is http://HOST:P
// --keys FILE       a JSON file {"keys":[private JWKs]}; made (one ES256 and one RS256 key)
//                   when it does not exist
// --issuer-host H   address to bind and to name in the issuer (default 127.0.0.1)
// --rotate          before starting, make a new ES256 key with a new kid and put it FIRST in
//                   FILE (it becomes the signing key); the old keys stay, still published
//
// Prints exactly one line on stdout, `listening http://HOST:PORT`, once it accepts
// connections; everything else goes to stderr. Exits 0 on SIGTERM or SIGINT.
//
// oidc-provider is not installed next to this file: scripts/setup-interop.sh installs the
// version pinned in package.json into target/interop/provider/node_modules. It is found in
// each NODE_PATH directory, then there. (ES modules ignore NODE_PATH, so this is done by
// hand.)
//
// State (tokens, grants) lives in memory: a restart forgets every opaque token, while JWT
// access tokens stay verifiable for as long as their key is published.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// ---------------------------------------------------------------- arguments

function usage(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.stderr.write('usage: node provider.mjs --port PORT --keys FILE [--issuer-host HOST] [--rotate]\n');
  process.exit(2);
}

const options = { port: undefined, keys: undefined, host: '127.0.0.1', rotate: false };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    switch (arg) {
      case '--port': options.port = value(); break;
      case '--keys': options.keys = value(); break;
      case '--issuer-host': options.host = value(); break;
      case '--rotate': options.rotate = true; break;
      default: usage(`unknown argument ${arg}`);
    }
  }
}
if (options.port === undefined || !/^\d+$/.test(options.port) || Number(options.port) > 65535) {
  usage('--port must be a number from 0 to 65535');
}
if (!options.keys) usage('--keys is required');
const port = Number(options.port);

// ---------------------------------------------------------------- oidc-provider

async function loadOidcProvider() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dirs = [
    ...(process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean),
    path.resolve(here, '../../target/interop/provider/node_modules'),
  ];
  const require = createRequire(import.meta.url);
  for (const dir of dirs) {
    let entry;
    try {
      entry = require.resolve(path.resolve(dir, 'oidc-provider'));
    } catch {
      continue;
    }
    return import(pathToFileURL(entry).href);
  }
  process.stderr.write(`provider.mjs: oidc-provider is not installed in any of ${dirs.join(', ')}; run scripts/setup-interop.sh\n`);
  process.exit(3);
}

const { default: Provider, errors } = await loadOidcProvider();

// ---------------------------------------------------------------- keys

function newKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function writeKeys(file, jwks) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function loadKeys(file, rotate) {
  let jwks;
  if (fs.existsSync(file)) {
    jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
      throw new Error(`${file} is not a {"keys":[...]} document with at least one key`);
    }
  } else {
    jwks = { keys: [newKey('ES256'), newKey('RS256')] };
    writeKeys(file, jwks);
  }
  if (rotate) {
    jwks.keys.unshift(newKey('ES256'));
    writeKeys(file, jwks);
  }
  return jwks;
}


// ---------------------------------------------------------------- resource servers

const SCOPE = 'notes:read notes:write notes:delete';

// RFC 8707 resource indicators: http URIs on 127.0.0.1 and `urn:` names get JWT access
// tokens for that audience; `urn:opaque-notes` gets opaque ones; anything else is refused
// with `invalid_target`.
function resourceServer(resource) {
  if (resource === 'urn:opaque-notes') {
    return {
      scope: SCOPE, audience: resource, accessTokenFormat: 'opaque', accessTokenTTL: 3600,
    };
  }
  let local = resource.startsWith('urn:');
  if (!local) {
    try {
      const url = new URL(resource);
      local = url.protocol === 'http:' && url.hostname === '127.0.0.1';
    } catch {
      local = false;
    }
  }
  if (!local) return undefined;
  return {
    scope: SCOPE,
    audience: resource,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 3600,
    jwt: { sign: { alg: 'ES256' } },
  };
}

// ---------------------------------------------------------------- the server

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, options.host, () => {
    server.off('error', reject);
    resolve();
  });
});
const address = server.address();
const hostInUrl = address.family === 'IPv6' ? `[${options.host}]` : options.host;
const issuer = `http://${hostInUrl}:${address.port}`;

// Keys are read (and rotated) only once the port is bound, so a start that fails to bind
// (the port still taken) never rotates.
const jwks = loadKeys(path.resolve(options.keys), options.rotate);
process.stderr.write(`provider.mjs: signing kids ${jwks.keys.map((k) => k.kid).join(', ')}\n`);

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: 'notes-agent',
      client_secret: 'notes-agent-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: SCOPE,
    },
    {
      client_id: 'introspector',
      client_secret: 'introspector-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'offline_access', ...SCOPE.split(' ')],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Only the resource server's own client may introspect.
      allowedPolicy: async (_ctx, client) => client.clientId === 'introspector',
    },
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo: async (_ctx, resource) => {
        const info = resourceServer(resource);
        if (!info) throw new errors.InvalidTarget(`resource ${resource} is not served here`);
        return info;
      },
    },
  },
});

provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`provider.mjs: server_error: ${err?.stack || err}\n`);
});

server.on('request', provider.callback());

function stop(signal) {
  process.stderr.write(`provider.mjs: ${signal}, stopping\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Never hang on a stuck connection.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

process.stdout.write(`listening ${issuer}\n`);
