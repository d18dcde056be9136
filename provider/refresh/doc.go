// Package refresh is the refresh-token grant's handler: fosite's, which
// reads and checks the presented token and answers, with the rotation and
// the new tokens written in one call to a store that can (Rotator) instead
// of in a transaction of fosite's. A store that cannot, or a call that
// wrote nothing without refusing, takes fosite's transactional path.
package refresh
