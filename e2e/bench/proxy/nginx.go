package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// nginxConf is a reverse proxy as it would be set up in front of model
// servers: least_conn over a keepalive upstream, HTTP/1.1 upstream
// connections, response buffering off so SSE events pass at once, request
// bodies up to 16 MB (buffered in memory, as our proxy does).
const nginxConf = `worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    upstream backend {
        least_conn;
        server %[2]s;
        keepalive 512;
    }
    server {
        listen %[3]s;
        client_max_body_size 16m;
        client_body_buffer_size 1m;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
`

// startNginx runs nginx in the foreground with a generated config under
// dir; the caller kills the returned process.
func startNginx(dir, listen, backend string) (*exec.Cmd, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("nginx not found (apt-get install -y nginx): %w", err)
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, backend, listen)), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd, cmd.Start()
}
