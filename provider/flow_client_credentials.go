package provider

import (
	"github.com/ory/fosite"
)

// grantClientCredentials applies wxidp's rules to a client_credentials
// request fosite has authenticated (its own handler grants nothing): every
// requested scope fosite has checked against the registration, the
// audience, and the client as the tokens' subject.
func grantClientCredentials(ar fosite.AccessRequester, sess *Session) {
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	grantAudience(ar)
	sess.Subject = ar.GetClient().GetID()
	sess.ClientID = ar.GetClient().GetID()
}

// grantAudience grants what fosite has already checked lies within the
// client's registration: the requested audience, else the registered one,
// else the client itself, so aud is never empty.
func grantAudience(ar fosite.Requester) {
	client := ar.GetClient()
	aud := ar.GetRequestedAudience()
	if len(aud) == 0 {
		aud = client.GetAudience()
	}
	if len(aud) == 0 {
		aud = []string{client.GetID()}
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
}
