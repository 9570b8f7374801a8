package fleetv1

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// CheckReport refuses a report whose problems are out of bounds or not
// what a status condition can carry, and takes those NewProblem builds.
func TestCheckReportProblems(t *testing.T) {
	long := strings.Repeat("é", MaxProblemMessageBytes) // 2 bytes a rune
	many := &PoolProblems{}
	for i := range MaxProblemsPerReport + 1 {
		many.Problems = append(many.Problems, &PoolProblem{Pool: strings.Repeat("p", i+1), Reason: "R"})
	}
	for _, c := range []struct {
		name    string
		ps      []*PoolProblem
		wantErr string
	}{
		{"none", nil, ""},
		{"tokenizer", []*PoolProblem{NewProblem("gw/inferencepool/ns/p", ReasonTokenizerUnusable, "open /x: no such file")}, ""},
		{"two reasons of one pool", []*PoolProblem{{Pool: "p", Reason: "A"}, {Pool: "p", Reason: "B1"}}, ""},
		{"long message shortened", []*PoolProblem{NewProblem("p", "R", long)}, ""},
		{"no pool", []*PoolProblem{{Reason: "R"}}, "pool name"},
		{"long pool", []*PoolProblem{{Pool: strings.Repeat("p", MaxPoolNameBytes+1), Reason: "R"}}, "pool name"},
		{"no reason", []*PoolProblem{{Pool: "p"}}, "reason"},
		{"reason with space", []*PoolProblem{{Pool: "p", Reason: "Bad Reason"}}, "reason"},
		{"reason starting with a digit", []*PoolProblem{{Pool: "p", Reason: "1Bad"}}, "reason"},
		{"non-ASCII reason", []*PoolProblem{{Pool: "p", Reason: "Réason"}}, "reason"},
		{"long reason", []*PoolProblem{{Pool: "p", Reason: strings.Repeat("R", MaxProblemReasonBytes+1)}}, "reason"},
		{"long message", []*PoolProblem{{Pool: "p", Reason: "R", Message: long}}, "message"},
		{"invalid UTF-8", []*PoolProblem{{Pool: "p", Reason: "R", Message: "a\xffb"}}, "message"},
		{"same pool and reason twice", []*PoolProblem{{Pool: "p", Reason: "R"}, {Pool: "p", Reason: "R", Message: "again"}}, "twice"},
		{"too many", many.Problems, "problems, at most"},
	} {
		err := CheckReport(&KeyReport{Problems: &PoolProblems{Problems: c.ps}}, MaxKeysPerPool)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: err %v, want one about %q", c.name, err, c.wantErr)
		}
	}
}

// NewProblem keeps messages within the limit, on a rune boundary, valid
// UTF-8, and says where it cut.
func TestNewProblemMessage(t *testing.T) {
	for _, msg := range []string{"short", strings.Repeat("x", 2000), strings.Repeat("日本", 300), "bad \xff\xfe bytes"} {
		p := NewProblem("p", "R", msg)
		got := p.GetMessage()
		if len(got) > MaxProblemMessageBytes || !utf8.ValidString(got) {
			t.Errorf("NewProblem(%.20q…): message of %d bytes, valid %v", msg, len(got), utf8.ValidString(got))
		}
		if len(msg) > MaxProblemMessageBytes && !strings.HasSuffix(got, "...") {
			t.Errorf("NewProblem(%.20q…): a cut message should end in ...: %q", msg, got[len(got)-10:])
		}
		if len(msg) <= MaxProblemMessageBytes && utf8.ValidString(msg) && got != msg {
			t.Errorf("NewProblem(%q) changed it to %q", msg, got)
		}
	}
}

// FuzzReportProblems decodes arbitrary bytes as a report's problems: what
// CheckReport accepts is what a status condition can carry (bounded,
// valid UTF-8, a reason of letters and digits, one per pool and reason),
// and NewProblem's output of any message is accepted.
func FuzzReportProblems(f *testing.F) {
	for _, m := range []*PoolProblems{
		{Problems: []*PoolProblem{NewProblem("gw/inferencepool/ns/p", ReasonTokenizerUnusable, "open /t.json: no such file")}},
		{Problems: []*PoolProblem{{Pool: "p", Reason: "A"}, {Pool: "p", Reason: "A"}}},
		{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "message")
	}
	f.Fuzz(func(t *testing.T, data []byte, msg string) {
		if err := CheckReport(&KeyReport{Problems: &PoolProblems{Problems: []*PoolProblem{NewProblem("p", "R", msg)}}}, MaxKeysPerPool); err != nil {
			t.Fatalf("NewProblem(%q) refused: %v", msg, err)
		}
		var ps PoolProblems
		if proto.Unmarshal(data, &ps) != nil || CheckReport(&KeyReport{Problems: &ps}, MaxKeysPerPool) != nil {
			return
		}
		seen := map[[2]string]bool{}
		for _, p := range ps.GetProblems() {
			if p.GetPool() == "" || len(p.GetPool()) > MaxPoolNameBytes || !validReason(p.GetReason()) ||
				len(p.GetMessage()) > MaxProblemMessageBytes || !utf8.ValidString(p.GetMessage()) || seen[[2]string{p.GetPool(), p.GetReason()}] {
				t.Fatalf("accepted %v", p)
			}
			seen[[2]string{p.GetPool(), p.GetReason()}] = true
		}
	})
}
