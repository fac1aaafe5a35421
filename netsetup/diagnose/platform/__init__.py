"""The one place for what differs between Windows, macOS and Linux (DF bit, routes, DNS policy).

Checks ask these modules and end `skip` with the reason where a platform cannot answer.
`net` holds the socket and routing parts, `dns` the resolver configuration."""
