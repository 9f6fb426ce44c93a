// Where the page sends events. `make deploy` uploads a copy of this file with the API Gateway URL of the
// collector on LocalStack and the shop's write key; served from here (e.g. `python -m http.server 8000`) it
// targets `chalice local`, which needs no key.
export default { collectorUrl: "http://localhost:60000" };
