// Package apptoken caches each mini-program's WeChat access token (the
// stable_token API) in the database, shared by every wxidp process, so that
// no two processes ever replace each other's token.
//
// Every WeChat server API that takes an access_token reads it from here:
// today the phone-number lookup of the WeChat-code grant; next, the
// mini-program code (wxacode) that scan-to-login shows as its QR code. Its
// users declare the one method they need, Get.
package apptoken
