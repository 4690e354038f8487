package smtpgw

import "errors"

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl does not have: the server
// asks for the user name, then for the password, and checks them. A
// client may send the user name with the AUTH command.
type loginServer struct {
	auth  func(user, pass string) error
	state int
	user  string
}

const (
	loginStart = iota
	loginUser
	loginPass
	loginDone
)

func (a *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch a.state {
	case loginStart, loginUser:
		if a.state == loginStart && resp == nil {
			a.state = loginUser
			return []byte("Username:"), false, nil
		}
		a.user = string(resp)
		a.state = loginPass
		return []byte("Password:"), false, nil
	case loginPass:
		a.state = loginDone
		return nil, true, a.auth(a.user, string(resp))
	}
	return nil, true, errors.New("LOGIN: unexpected response")
}
