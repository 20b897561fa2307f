// A real OpenID Provider for the integration tests: `oidc-provider` (npm), configured here.
//
// usage: node oidc_idp.mjs PORT KID
//
// Listens on 127.0.0.1:PORT with the issuer http://127.0.0.1:PORT, signs with a fresh RSA key
// (generated at start, so a restart with another KID is a key rotation) and serves discovery and
// the JWKS. One confidential client, `palisade-it` / `palisade-it-secret`, may use the
// client_credentials grant. Resource indicators (RFC 8707) are on: any resource under
// https://gateway.test/mcp/ is a resource server with the scope `mcp:tools`, and its access
// tokens are JWTs (RFC 9068) whose `aud` is the resource. Prints `listening on http://ADDR` once
// ready; errors the provider handles go to stderr.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const [port, kid] = process.argv.slice(2);
if (!/^[0-9]+$/.test(port ?? '') || Number(port) === 0 || !kid) {
  console.error('usage: node oidc_idp.mjs PORT KID (PORT not 0: restarts keep the issuer)');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const RESOURCE_PREFIX = 'https://gateway.test/mcp/';

// The provider's JWKS holds private keys (it publishes their public halves at jwks_uri).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signing] },
  clients: [
    {
      client_id: 'palisade-it',
      client_secret: 'palisade-it-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async getResourceServerInfo(ctx, resourceIndicator) {
        if (!resourceIndicator.startsWith(RESOURCE_PREFIX)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'mcp:tools',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

for (const event of ['grant.error', 'server_error', 'discovery.error', 'jwks.error']) {
  provider.on(event, (_ctx, err) => console.error(`${event}: ${err?.message} ${err?.error_description ?? ''}`));
}

const server = createServer(provider.callback());
server.listen(Number(port), '127.0.0.1', () => {
  const { address, port: bound } = server.address();
  console.log(`listening on http://${address}:${bound}`);
});
