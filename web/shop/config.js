// The deployment's hooks for the buyer page (docs/shop.md), loaded before shop.js.
//
// Locally the page signs in through the development login (POST /purchase/api/v1/dev-login).
// Where an identity provider issues the tokens, define a function that resolves to a bearer
// token, for instance one that sends the buyer to the provider's hosted sign-in:
//
//   window.SHOP_TOKEN_PROVIDER = async () => { ...; return accessToken; };
//
// The page also takes a token from its URL fragment (#token=…, #access_token=… or
// #id_token=…, as an OAuth implicit or hosted-UI redirect delivers it) and removes it from the
// address bar at once. No secret belongs in this file: it is public.
