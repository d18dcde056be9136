// Command wxidp is the identity provider's one binary: serve, migrate,
// clients, keys. All wiring lives here, one run function per subcommand;
// nothing else in the module knows about flags or environment variables.
package main
