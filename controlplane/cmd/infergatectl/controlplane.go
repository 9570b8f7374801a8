package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	debugv1 "github.com/infergate/infergate/proto/debug/v1"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
	"github.com/infergate/infergate/proto/xdsclient"
)

const defaultServer = "127.0.0.1:18000"

// serverFlags are the flags every command talking to the control plane
// takes: where it is and how to authenticate.
type serverFlags struct {
	addr, caFile, tokenFile, serverName string
}

func (s *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.addr, "server", defaultServer, "control plane gRPC address (xDS + debug)")
	fs.StringVar(&s.caFile, "ca-file", "", "PEM CA of the control plane's certificate (the ca.crt of its xDS TLS Secret); enables TLS")
	fs.StringVar(&s.tokenFile, "token-file", "", "bearer token file, e.g. from `kubectl create token SA --audience infergate.dev/xds` for a user allowed to list Gateways (needs --ca-file)")
	fs.StringVar(&s.serverName, "server-name", "", "name to verify in the control plane's certificate (default: the host of --server)")
}

// dial connects to the control plane's debug service.
func (s serverFlags) dial() (debugv1.DebugClient, func(), error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if s.tokenFile != "" && s.caFile == "" {
		return nil, nil, usageError{"--token-file needs --ca-file: tokens are only sent over TLS"}
	}
	if s.caFile != "" {
		secure, err := xdsclient.SecureDialOptions(s.caFile, s.serverName, s.tokenFile)
		if err != nil {
			return nil, nil, err
		}
		opts = secure
	}
	conn, err := grpc.NewClient(s.addr, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("control plane %s: %w", s.addr, err)
	}
	return debugv1.NewDebugClient(conn), func() { conn.Close() }, nil
}

func checkOutput(o string) error {
	switch o {
	case "table", "json", "yaml":
		return nil
	}
	return usageError{fmt.Sprintf("-o %q: want table, json or yaml", o)}
}

// writeProto prints a proto message as JSON or YAML.
func writeProto(w io.Writer, m proto.Message, format string) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintln(w, strings.TrimRight(string(b), "\n"))
	return err
}

// listCommand parses the flags shared by the listing commands (server
// connection, -o table|json|yaml) and connects.
func listCommand(name string, args []string, stdout io.Writer) (debugv1.DebugClient, string, func(), error) {
	fs := newFlags(name, name+" [--server ADDR] [--ca-file F --token-file F] [-o table|json|yaml]", stdout)
	var server serverFlags
	server.register(fs)
	out := fs.String("o", "table", "output: table, json or yaml")
	if err := parse(fs, args); err != nil {
		return nil, "", nil, err
	}
	if err := checkOutput(*out); err != nil {
		return nil, "", nil, err
	}
	c, closeConn, err := server.dial()
	if err != nil {
		return nil, "", nil, err
	}
	return c, *out, closeConn, nil
}

func runProxies(ctx context.Context, args []string, stdout io.Writer) error {
	c, out, closeConn, err := listCommand("proxies", args, stdout)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := c.ListProxies(ctx, &debugv1.ListProxiesRequest{})
	if err != nil {
		return fmt.Errorf("list proxies: %w", err)
	}
	if out != "table" {
		if err := writeProto(stdout, resp, out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GATEWAY\tNODE\tPOD\tADDRESS\tTYPE\tSENT\tACKED\tNACKED\tLAST SYNC\tSTATE")
		for _, p := range resp.Proxies {
			state := "SYNCED"
			if p.Stale {
				state = "STALE"
			}
			sync := "-"
			if p.LastSync != nil {
				sync = time.Since(p.LastSync.AsTime()).Round(time.Second).String() + " ago"
			}
			for i, ts := range p.Types {
				gw, node, pod, addr := p.Gateway, p.NodeId, p.Pod, p.Address
				if i > 0 {
					gw, node, pod, addr = "", "", "", ""
				}
				st := state
				if ts.NackReason != "" {
					st = "NACK: " + ts.NackReason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(gw), dash(node), dash(pod), dash(addr),
					snapshotv1.TypeName(ts.TypeUrl), dash(ts.Sent), dash(ts.Acked), dash(ts.Nacked), sync, st)
			}
			if len(p.Types) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t%s\n", dash(p.Gateway), dash(p.NodeId), dash(p.Pod), dash(p.Address), sync, state)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(resp.Proxies) == 0 {
			fmt.Fprintln(stdout, "(no proxies connected)")
		}
	}
	for _, p := range resp.Proxies {
		if p.Stale {
			return exitError{code: exitStale, msg: fmt.Sprintf("proxy %s (gateway %s) is stale", p.NodeId, p.Gateway)}
		}
		for _, ts := range p.Types {
			if ts.NackReason != "" {
				return exitError{code: exitStale, msg: fmt.Sprintf("proxy %s rejected %s: %s", p.NodeId, snapshotv1.TypeName(ts.TypeUrl), ts.NackReason)}
			}
		}
	}
	return nil
}

func runSnapshot(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("snapshot", "snapshot --gateway NS/NAME [--type T] [--server ADDR] [-o yaml|json]", stdout)
	var server serverFlags
	server.register(fs)
	gateway := fs.String("gateway", "", "gateway as namespace/name (required)")
	typ := fs.String("type", "", "only this resource type: Listener, Route, Backend, Endpoints, ModelRule, Manifest or a full type URL")
	out := fs.String("o", "yaml", "output: yaml or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *gateway == "" || !strings.Contains(*gateway, "/") {
		return usageError{"--gateway namespace/name is required"}
	}
	if *out != "yaml" && *out != "json" {
		return usageError{fmt.Sprintf("-o %q: want yaml or json", *out)}
	}
	c, closeConn, err := server.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := c.GetSnapshot(ctx, &debugv1.GetSnapshotRequest{Gateway: *gateway, Type: *typ})
	if err != nil {
		return fmt.Errorf("snapshot of %s from %s: %w", *gateway, server.addr, err)
	}
	return writeProto(stdout, resp, *out)
}

func runGateways(ctx context.Context, args []string, stdout io.Writer) error {
	c, out, closeConn, err := listCommand("gateways", args, stdout)
	if err != nil {
		return err
	}
	defer closeConn()
	resp, err := c.ListGateways(ctx, &debugv1.ListGatewaysRequest{})
	if err != nil {
		return fmt.Errorf("list gateways: %w", err)
	}
	if out != "table" {
		return writeProto(stdout, resp, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GATEWAY\tVERSION")
	for _, g := range resp.Gateways {
		fmt.Fprintf(tw, "%s\t%s\n", g.Gateway, g.Version)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
