# An independent implementation of docs/PROTOCOL.md section 7 (the workload), written from
# the document alone, to show it is complete. Needs `pip install blake3`.
# Usage: python3 docs/reference/workload.py MODEL  (input "attest golden vector", 8 tokens)
import blake3, sys
MODELS={"attest-tiny-1b":(22,32,10),"attest-base-8b":(32,64,10),"attest-large-70b":(80,128,11)}
def H(tag,data): return blake3.blake3(tag.encode()+b"\0"+data).digest()
def s8(b): return b-256 if b>127 else b
def wrap8(v): v&=0xff; return v-256 if v>127 else v
def clamp8(v): return max(-128,min(127,v))
def wrap32(v): v&=0xffffffff; return v-(1<<32) if v>=1<<31 else v
def run(model, inp, T):
    L,D,S=MODELS[model]
    n=len(inp)
    total=L*(D*D+D)+257*D+95*D
    xof=blake3.blake3(b"attest/weights/v1\0"+model.encode()).digest(length=total)
    w=[s8(b) for b in xof]
    off=0; W=[];B=[]
    for l in range(L):
        W.append([w[off+r*D:off+(r+1)*D] for r in range(D)]); off+=D*D
        B.append(w[off:off+D]); off+=D
    E=[w[off+t*D:off+(t+1)*D] for t in range(257)]; off+=257*D
    U=[w[off+v*D:off+(v+1)*D] for v in range(95)]
    def nxt(h):
        best=None;bv=0
        for v in range(95):
            lg=wrap32(sum(U[v][j]*h[j] for j in range(D)))
            if best is None or lg>best: best=lg;bv=v
        return 0x20+bv
    P=1+n+T-1
    h=[0]*D; oacc=bytes(32); leaves=[]; out=[]
    for i in range(P*L):
        pos,layer=divmod(i,L)
        if layer==0:
            t=256 if pos==0 else (inp[pos-1] if pos<=n else nxt(h))
            x=[wrap8(h[j]+E[t][j]) for j in range(D)]
        else: x=h
        o=[]
        for r in range(D):
            acc=wrap32((B[layer][r]<<6)+sum(W[layer][r][j]*x[j] for j in range(D)))
            q=clamp8(wrap32(acc+(1<<(S-1)))>>S)
            a=q if q>=0 else q>>2
            o.append(wrap8(x[r]+a))
        h=o
        if layer==L-1 and pos>=n:
            tok=nxt(h); out.append(tok); oacc=H("attest/output/v1", oacc+bytes([tok]))
        leaves.append(H("attest/trace-leaf/v1", i.to_bytes(8,"little")+bytes(b&0xff for b in h)+oacc))
    lvl=leaves
    while len(lvl)>1:
        lvl=[H("attest/merkle-node/v1",lvl[k]+lvl[k+1]) if k+1<len(lvl) else lvl[k] for k in range(0,len(lvl),2)]
    return bytes(out), lvl[0].hex(), len(leaves), oacc.hex()
print(run(sys.argv[1], b"attest golden vector", 8))
