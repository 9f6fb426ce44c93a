// Where the page sends events. `make deploy` uploads a copy of this file with the API Gateway URL of the
// collector on LocalStack; served from here (e.g. `python -m http.server 8000`) it targets `chalice local`.
export default { collectorUrl: "http://localhost:60000" };
