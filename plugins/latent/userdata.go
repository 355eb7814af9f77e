package latent

import (
	"bytes"
	"fmt"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

// DefaultUserData is the user data a cloud instance boots with unless
// the driver's UserData says otherwise: a shell script, run by cloud-init
// as root, that starts starforge-worker (which the image must have on
// its PATH) with the instance's master address, name and one-time
// password. The password goes through a file readable by root only, not
// the command line.
const DefaultUserData = `#!/bin/sh
# Starforge latent worker {{.Name}}
set -e
umask 077
mkdir -p /var/lib/starforge-worker
printf '%s\n' {{quote .Password}} > /var/lib/starforge-worker/password
exec starforge-worker --master {{quote .MasterAddr}} --name {{quote .WorkerName}} \
	--password-file /var/lib/starforge-worker/password --basedir /var/lib/starforge-worker \
	> /var/log/starforge-worker.log 2>&1
`

// userData expands text, a user_data template (config.ParseUserData),
// for inst. Empty text means DefaultUserData.
func userData(text string, inst latent.Instance) (string, error) {
	if text == "" {
		text = DefaultUserData
	}
	t, err := config.ParseUserData(text)
	if err != nil {
		return "", fmt.Errorf("user data: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, inst); err != nil {
		return "", fmt.Errorf("user data: %w", err)
	}
	return b.String(), nil
}
