package routesim
import ("testing";"fmt";"os";"github.com/infergate/infergate/dataplane/picker")
func TestDbg2(t *testing.T){
 var sc Scenario
 for _,x:=range Scenarios(0){ if x.Workload.Name==os.Getenv("W"){sc=x} }
 n:=0; all:=0
 st:=Strategy{Name:"x", New: func(e *Env,p int) picker.Picker { s:=mustDefault(); s.SetDecisionHook(func(d *picker.Decision){
   all++
   var ch picker.CandidateDecision
   best:=0.0
   for _,c:=range d.Candidates{ if c.Endpoint==d.Chosen{ch=c}; best=max(best,c.CachedTokens)}
   if ch.CachedTokens < 1000 && d.PromptTokens > 3000 { n++; if n%40==1 {
     fmt.Printf("cold pick (%d/%d) proxy %d prompt %.0f chosen %s\n", n, all, p, d.PromptTokens, d.Chosen)
     for _,c:=range d.Candidates{ fmt.Printf("   %s W%.0f R%.0f kv%.2f cached%.0f wait%.2f pre%.2f dec%.2f harm%.2f = %.2f\n",c.Endpoint,c.Waiting,c.Running,c.KVUsage,c.CachedTokens,c.Wait,c.Prefill,c.Decode,c.Harm,c.Cost)}
   }}
 }); return s}}
 cfg:=sc.Config; cfg.Proxies=4
 out,err:=Run(cfg, sc.Workload, st)
 if err!=nil{t.Fatal(err)}
 s:=Summarize(sc.Workload,out,8); fmt.Println("cold picks", n, "of", all, "tok/s", s.SteadyTokensPerSec, "hit", s.CacheHit)
}
