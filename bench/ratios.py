import json,sys,statistics as st
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for x in rows:
    if x.get('test')=='idle' and 'fds_after' in x and x.get('opened'):
        x['fds_per_tunnel']=(x['fds_after']-x['fds_before'])/x['opened']
def med(test,label,key,**kw):
    v=[r[key] for r in rows if r.get('test')==test and r.get('label')==label and key in r and not r.get('failed') and all(r.get(k)==w for k,w in kw.items())]
    return (st.median(v),min(v),max(v),len(v)) if v else None
peers=["direct","go-splice","squid","tinyproxy","arcfence"]
def f(x,d=0):
    if x is None: return "–"
    m,lo,hi,n=x
    fmt="%%.%df"%d
    return (fmt%m)+" ("+(fmt%lo)+"–"+(fmt%hi)+")"
def r(a,b):
    if a is None or b is None or b[0]==0: return "–"
    return "%.2fx"%(a[0]/b[0])
print("| peer | 1 tunnel MB/s | ÷direct | ÷squid | CPU s/GiB | 8 tunnels MB/s | ÷direct | ÷squid | CPU s/GiB |")
print("|---|---|---|---|---|---|---|---|---|")
for p in peers:
    a=med("throughput",p,"MBps",conns=1); a8=med("throughput",p,"MBps",conns=8)
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |"%(p,f(a),r(a,med("throughput","direct","MBps",conns=1)),r(a,med("throughput","squid","MBps",conns=1)),f(med("throughput",p,"proxy_cpu_s_per_GiB",conns=1),2),
        f(a8),r(a8,med("throughput","direct","MBps",conns=8)),r(a8,med("throughput","squid","MBps",conns=8)),f(med("throughput",p,"proxy_cpu_s_per_GiB",conns=8),2)))
print()
print("| peer | CONNECT ops/s | ÷direct | ÷squid | p50 ms | p99 ms | proxy CPU µs/op | idle tunnels held | KiB/idle tunnel | fds/idle tunnel | alive after hold |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for p in peers:
    c=med("connrate",p,"ops_per_s")
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"%(p,f(c),r(c,med("connrate","direct","ops_per_s")),r(c,med("connrate","squid","ops_per_s")),f(med("connrate",p,"p50_ms"),2),f(med("connrate",p,"p99_ms"),2),
      f(med("connrate",p,"proxy_cpu_us_per_op")),f(med("idle",p,"opened")),f(med("idle",p,"kib_per_tunnel"),1),f(med("idle",p,"fds_per_tunnel"),1) if med("idle",p,"fds_per_tunnel") else "–", f(med("idle",p,"alive_after_hold"))))
print()
print("| DNS setup | queries/s | ÷stub | ÷dnsmasq same case | server CPU µs/query | lost % |")
print("|---|---|---|---|---|---|")
stub=med("dns","stub-direct","qps")
pair={"arcfence-nocache-forward":"dnsmasq-nocache-forward","arcfence-blocked":"dnsmasq-blocked-nxdomain","arcfence-cache10000-hit":"dnsmasq-cache10000-hit"}
for l in ["stub-direct","dnsmasq-nocache-forward","dnsmasq-blocked-nxdomain","dnsmasq-cache10000-hit","arcfence-nocache-forward","arcfence-blocked","arcfence-cache10000-hit"]:
    q=med("dns",l,"qps")
    print("| %s | %s | %s | %s | %s | %s |"%(l,f(q),r(q,stub),r(q,med("dns",pair[l],"qps")) if l in pair else "–",f(med("dns",l,"server_cpu_us_per_q"),1),f(med("dns",l,"lost_pct"),2)))
