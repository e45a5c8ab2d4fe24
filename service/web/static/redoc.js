// Starts ReDoc on the service's own API document (a file, not inline: the CSP allows no inline script).
Redoc.init("/openapi.json", {}, document.getElementById("redoc"));
