package config_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/infergate/infergate/dataplane/config"
	"github.com/infergate/infergate/dataplane/config/configtest"
	snapshotv1 "github.com/infergate/infergate/proto/snapshot/v1"
)

const pickerEndpoints = gw + "/endpointpicker/ns/epp:9002"

// withPicker is valid() with an endpoint picker on the pool.
func withPicker(p *snapshotv1.EndpointPicker) []snapshotv1.Named {
	rs := valid()
	rs[1].(*snapshotv1.Backend).EndpointPicker = p
	return append(rs, &snapshotv1.Endpoints{Name: pickerEndpoints, Endpoints: []*snapshotv1.Endpoint{
		{Address: "10.0.1.1", Port: 9002}, {Address: "::ffff:10.0.1.2", Port: 9002}, {Address: "10.0.1.1", Port: 9002},
	}})
}

func TestCompileEndpointPicker(t *testing.T) {
	c, err := config.Compile(configtest.Resources(gw, withPicker(&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: pickerEndpoints,
		FailureMode: snapshotv1.EndpointPicker_FAIL_OPEN, Timeout: durationpb.New(3 * time.Second)})...))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Backends[gw+"/inferencepool/ns/pool"].Picker
	if p == nil || !p.FailOpen || p.Timeout != 3*time.Second || p.Key == "" || strings.Join(p.Addresses, ",") != "10.0.1.1:9002,10.0.1.2:9002" {
		t.Fatalf("picker %+v", p)
	}
	c2, err := config.Compile(configtest.Resources(gw, withPicker(&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: pickerEndpoints, Plaintext: true})...))
	if err != nil {
		t.Fatal(err)
	}
	if p2 := c2.Backends[gw+"/inferencepool/ns/pool"].Picker; p2.Key == p.Key || p2.FailOpen {
		t.Fatalf("a plain-text picker shares the TLS one's connection key, or fails open: %+v", p2)
	}
	c3, err := config.Compile(configtest.Resources(gw, withPicker(&snapshotv1.EndpointPicker{Service: "ns/epp", InvalidReason: "endpoint picker Service ns/epp not found"})...))
	if err != nil {
		t.Fatal(err)
	}
	if p3 := c3.Backends[gw+"/inferencepool/ns/pool"].Picker; p3.Invalid == "" {
		t.Fatalf("invalid reason lost: %+v", p3)
	}
}

func TestCompileEndpointPickerInvalid(t *testing.T) {
	for name, tc := range map[string]struct {
		p    *snapshotv1.EndpointPicker
		want string
	}{
		"no service":           {&snapshotv1.EndpointPicker{Endpoints: pickerEndpoints}, "endpointPicker: service: empty"},
		"unknown endpoints":    {&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: "gone"}, `unknown Endpoints resource "gone"`},
		"timeout too long":     {&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: pickerEndpoints, Timeout: durationpb.New(time.Hour)}, "timeout: 1h0m0s is outside"},
		"timeout zero":         {&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: pickerEndpoints, Timeout: durationpb.New(0)}, "timeout: 0s is outside"},
		"unknown failure mode": {&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: pickerEndpoints, FailureMode: 7}, "failureMode: unknown"},
		"tls on plain text": {&snapshotv1.EndpointPicker{Service: "ns/epp:9002", Endpoints: pickerEndpoints, Plaintext: true,
			Tls: &snapshotv1.BackendTLS{Hostname: "epp"}}, "tls: set on a plain-text picker"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Compile(configtest.Resources(gw, withPicker(tc.p)...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want containing %s", err, tc.want)
			}
		})
	}
	rs := valid()
	rs[3].(*snapshotv1.Backend).EndpointPicker = &snapshotv1.EndpointPicker{Service: "ns/epp:9002"}
	if _, err := config.Compile(configtest.Resources(gw, rs...)); err == nil || !strings.Contains(err.Error(), "only an InferencePool") {
		t.Fatalf("picker on a Service: %v", err)
	}
}
