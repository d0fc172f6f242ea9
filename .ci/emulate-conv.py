#!/usr/bin/env python3
# No-GPU check of kernels/conv.cu: a literal pure-Python emulation of conv_fwd / conv_dgrad /
# conv_wgrad (thread-to-element mappings, 64x64x16 tiles, register prefetch, parity classes, split-K
# and splitk_reduce) and of the split-K choice in src/ops/conv/cuda.rs, compared in f64 with naive
# convolutions on small general geometries (with and without forced split-K). Keep it in step with
# the kernels when their indexing changes. Runs in ~10 s:  python3 .ci/emulate-conv.py
# Literal emulation of kernels/conv.cu (thread mappings, tiles, split-K, reduce) against naive conv.
import random, math, sys
BM=BN=64; BK=16; NT=256
def cdiv(a,b): return -(-a//b)

def split_k(tiles,k,out,force=None):
    by_k=max(cdiv(k,BK*8),1); by_ws=max((64<<20)//max(out,1),1); want=cdiv(512,max(tiles,1))
    splits=max(1,min(64,min(want,by_k,by_ws)))
    if force: splits=force
    kchunk=max(cdiv(cdiv(k,splits),BK),1)*BK
    return max(cdiv(k,kchunk),1),kchunk

def run_blocks(grid, block_fn):
    for z in range(grid[2]):
        for y in range(grid[1]):
            for x in range(grid[0]):
                block_fn(x,y,z)

def mainloop(kbeg,kend,load,store_tiles):
    # returns acc[64][64] (rows m-local, cols n-local)
    acc=[[0.0]*BN for _ in range(BM)]
    if kbeg<kend:
        regs=load(kbeg)
        k0=kbeg
        while k0<kend:
            A=[[0.0]*BM for _ in range(BK)]; B=[[0.0]*BN for _ in range(BK)]
            store_tiles(regs,A,B)
            if k0+BK<kend: regs=load(k0+BK)
            for kk in range(BK):
                for r in range(BM):
                    a=A[kk][r]
                    if a==0.0: continue
                    row=acc[r]; b=B[kk]
                    for c in range(BN): row[c]+=a*b[c]
            k0+=BK
    return acc

def conv_fwd(a,x,wt,bias,out,ws,grid):
    ks=a['k']; kk2=ks*ks; M=a['cout']; K=a['cin']*kk2; hwo=a['ho']*a['wo']; N=a['n']*hwo
    def block(bx,by,bz):
        m0=by*BM; n0=bx*BN; kbeg=bz*a['kchunk']; kend=min(K,kbeg+a['kchunk'])
        tinfo=[]
        for t in range(NT):
            b_c=t&63; j=n0+b_c; jv=j<N; ih0=iw0=0; xb=0
            if jv:
                nb=j//hwo; pix=j-nb*hwo; oh=pix//a['wo']; ow=pix-oh*a['wo']
                ih0=oh*a['s']-a['p']; iw0=ow*a['s']-a['p']; xb=nb*a['cin']*a['h']*a['w']
            tinfo.append((jv,ih0,iw0,xb))
        def load(k0):
            regs=[]
            for t in range(NT):
                a_kk=t&15; a_r=t>>4; b_kk=t>>6; jv,ih0,iw0,xb=tinfo[t]
                ka=k0+a_kk
                ra=[wt[m*K+ka] if (m<M and ka<kend) else 0.0 for m in (m0+a_r+16*i for i in range(4))]
                rb=[]
                for i in range(4):
                    k=k0+b_kk+4*i; v=0.0
                    if jv and k<kend:
                        ci=k//kk2; r=k-ci*kk2; ki=r//ks; kj=r-ki*ks; ih=ih0+ki; iw=iw0+kj
                        if 0<=ih<a['h'] and 0<=iw<a['w']: v=x[xb+(ci*a['h']+ih)*a['w']+iw]
                    rb.append(v)
                regs.append((ra,rb))
            return regs
        def store(regs,A,B):
            for t in range(NT):
                ra,rb=regs[t]
                for i in range(4):
                    A[t&15][(t>>4)+16*i]=ra[i]; B[(t>>6)+4*i][t&63]=rb[i]
        acc=mainloop(kbeg,kend,load,store)
        out_numel=N*M
        for t in range(NT):
            tx=t&15; ty=t>>4
            for jj in range(4):
                col=n0+tx*4+jj
                if col>=N: continue
                nb=col//hwo; pix=col-nb*hwo
                for i in range(4):
                    m=m0+ty*4+i
                    if m>=M: continue
                    idx=(nb*M+m)*hwo+pix; v=acc[ty*4+i][tx*4+jj]
                    if a['splits']==1:
                        if a['has_bias']: v=v+bias[m]
                        out[idx]= out[idx]+v if a['accumulate'] else v
                    else: ws[bz*out_numel+idx]=v
    run_blocks(grid,block)

def conv_dgrad(a,dy,wt,bias,out,ws,grid,TT):
    s=a['s']; classes=s*s
    def block(bx,by,bz):
        cls=bz%classes; split=bz//classes; rh=cls//s; rw=cls-rh*s
        ki0=(rh+a['p'])%s; qh=(rh+a['p'])//s; kj0=(rw+a['p'])%s; qw=(rw+a['p'])//s
        k=a['k']
        Kh=TT if TT else ((k-ki0+s-1)//s if ki0<k else 0)
        Kw=TT if TT else ((k-kj0+s-1)//s if kj0<k else 0)
        Ah=(a['h']-rh+s-1)//s if rh<a['h'] else 0
        Aw=(a['w']-rw+s-1)//s if rw<a['w'] else 0
        M=a['cin']; ahw=Ah*Aw; N=a['n']*ahw; khw=Kh*Kw; K=a['cout']*khw
        m0=by*BM; n0=bx*BN
        if n0>=N or m0>=M: return
        kbeg=split*a['kchunk']; kend=min(K,kbeg+a['kchunk'])
        kk2=k*k; hwo=a['ho']*a['wo']
        tinfo=[]
        for t in range(NT):
            j=n0+(t&63); jv=j<N; oh0=ow0=0; dyb=0
            if jv:
                nb=j//ahw; rem=j-nb*ahw; aa=rem//Aw; bb=rem-aa*Aw; oh0=aa+qh; ow0=bb+qw; dyb=nb*a['cout']*hwo
            tinfo.append((jv,oh0,ow0,dyb))
        def load(k0):
            regs=[]
            for t in range(NT):
                kA=k0+(t&15); base=-1
                if kA<kend:
                    co=kA//khw; r=kA-co*khw; tt=r//Kw; u=r-tt*Kw
                    base=co*a['cin']*kk2+(ki0+s*tt)*k+(kj0+s*u)
                ra=[wt[base+m*kk2] if (m<M and base>=0) else 0.0 for m in (m0+(t>>4)+16*i for i in range(4))]
                jv,oh0,ow0,dyb=tinfo[t]; rb=[]
                for i in range(4):
                    kk=k0+(t>>6)+4*i; v=0.0
                    if jv and kk<kend:
                        co=kk//khw; r=kk-co*khw; tt=r//Kw; u=r-tt*Kw; oh=oh0-tt; ow=ow0-u
                        if 0<=oh<a['ho'] and 0<=ow<a['wo']: v=dy[dyb+(co*a['ho']+oh)*a['wo']+ow]
                    rb.append(v)
                regs.append((ra,rb))
            return regs
        def store(regs,A,B):
            for t in range(NT):
                ra,rb=regs[t]
                for i in range(4):
                    A[t&15][(t>>4)+16*i]=ra[i]; B[(t>>6)+4*i][t&63]=rb[i]
        acc=mainloop(kbeg,kend,load,store)
        out_numel=a['n']*M*a['h']*a['w']
        for t in range(NT):
            tx=t&15; ty=t>>4
            for jj in range(4):
                col=n0+tx*4+jj
                if col>=N: continue
                nb=col//ahw; rem=col-nb*ahw; aa=rem//Aw; bb=rem-aa*Aw; ih=rh+s*aa; iw=rw+s*bb
                for i in range(4):
                    m=m0+ty*4+i
                    if m>=M: continue
                    idx=((nb*M+m)*a['h']+ih)*a['w']+iw; v=acc[ty*4+i][tx*4+jj]
                    if a['splits']==1:
                        if a['has_bias']: v=v+bias[m]
                        out[idx]= out[idx]+v if a['accumulate'] else v
                    else: ws[split*out_numel+idx]=v
    run_blocks(grid,block)

def conv_wgrad(a,x,dy,out,ws,grid):
    ks=a['k']; kk2=ks*ks; hwo=a['ho']*a['wo']; M=a['cout']; N=a['cin']*kk2; K=a['n']*hwo
    chw=a['cin']*a['h']*a['w']
    def block(bx,by,bz):
        m0=by*BM; n0=bx*BN; kbeg=bz*a['kchunk']; kend=min(K,kbeg+a['kchunk'])
        cols=[]
        for t in range(NT):
            r0=t>>4; c=[]
            for i in range(4):
                jn=n0+r0+16*i
                if jn<N:
                    ci=jn//kk2; r=jn-ci*kk2; ki=r//ks; kj=r-ki*ks; c.append((ci*a['h']*a['w'],ki,kj))
                else: c.append((-1,0,0))
            cols.append(c)
        def load(k0):
            regs=[]
            for t in range(NT):
                kk=t&15; r0=t>>4; k=k0+kk
                if k<kend:
                    nb=k//hwo; pix=k-nb*hwo; oh=pix//a['wo']; ow=pix-oh*a['wo']
                    dyb=nb*a['cout']*hwo+pix; xb=nb*chw; ih0=oh*a['s']-a['p']; iw0=ow*a['s']-a['p']
                    ra=[];rb=[]
                    for i in range(4):
                        m=m0+r0+16*i
                        ra.append(dy[dyb+m*hwo] if m<M else 0.0)
                        coff,ki,kj=cols[t][i]; ih=ih0+ki; iw=iw0+kj
                        rb.append(x[xb+coff+ih*a['w']+iw] if (coff>=0 and 0<=ih<a['h'] and 0<=iw<a['w']) else 0.0)
                else: ra=[0.0]*4; rb=[0.0]*4
                regs.append((ra,rb))
            return regs
        def store(regs,A,B):
            for t in range(NT):
                ra,rb=regs[t]
                for i in range(4):
                    A[t&15][(t>>4)+16*i]=ra[i]; B[t&15][(t>>4)+16*i]=rb[i]
        acc=mainloop(kbeg,kend,load,store)
        for t in range(NT):
            tx=t&15; ty=t>>4
            for i in range(4):
                m=m0+ty*4+i
                if m>=M: continue
                for jj in range(4):
                    col=n0+tx*4+jj
                    if col>=N: continue
                    idx=m*N+col; v=acc[ty*4+i][tx*4+jj]
                    if a['splits']==1: out[idx]=out[idx]+v
                    else: ws[bz*M*N+idx]=v
    run_blocks(grid,block)

def reduce(ws,splits,numel,out,bias,c,hw,acc,hb):
    for i in range(numel):
        v=0.0
        for z in range(splits): v+=ws[z*numel+i]
        if hb: v=v+bias[(i//hw)%c]
        out[i]= out[i]+v if acc else v

def args(pb,splits,kchunk,acc,hb):
    d=dict(pb); d.update(splits=splits,kchunk=kchunk,accumulate=int(acc),has_bias=int(hb)); return d

def gemm_fwd(pb,x,w,bias,y,acc,force=None):
    m,n,k=pb['cout'],pb['n']*pb['ho']*pb['wo'],pb['cin']*pb['k']**2
    out=pb['n']*pb['cout']*pb['ho']*pb['wo']
    tiles=(cdiv(m,64),cdiv(n,64)); splits,kchunk=split_k(tiles[0]*tiles[1],k,out,force)
    a=args(pb,splits,kchunk,acc,bias is not None)
    ws=[float('nan')]*(splits*out if splits>1 else 1)
    conv_fwd(a,x,w,bias,y,ws,(tiles[1],tiles[0],splits))
    if splits>1: reduce(ws,splits,out,y,bias,pb['cout'],pb['ho']*pb['wo'],acc,bias is not None)

def gemm_dgrad(pb,dy,w,bias,dx,acc,force=None):
    s=pb['s']; taps=cdiv(pb['k'],s)
    m,nmax,kmax=pb['cin'],pb['n']*cdiv(pb['h'],s)*cdiv(pb['w'],s),pb['cout']*taps*taps
    out=pb['n']*pb['cin']*pb['h']*pb['w']
    tiles=(cdiv(m,64),cdiv(nmax,64)); splits,kchunk=split_k(tiles[0]*tiles[1]*s*s,kmax,out,force)
    a=args(pb,splits,kchunk,acc,bias is not None)
    TT= taps if (pb['k']%s==0 and taps in (2,4)) else 0
    ws=[float('nan')]*(splits*out if splits>1 else 1)
    conv_dgrad(a,dy,w,bias,dx,ws,(tiles[1],tiles[0],splits*s*s),TT)
    if splits>1: reduce(ws,splits,out,dx,bias,pb['cin'],pb['h']*pb['w'],acc,bias is not None)

def gemm_wgrad(pb,x,dy,dw,force=None):
    m,n,k=pb['cout'],pb['cin']*pb['k']**2,pb['n']*pb['ho']*pb['wo']
    out=m*n; tiles=(cdiv(m,64),cdiv(n,64)); splits,kchunk=split_k(tiles[0]*tiles[1],k,out,force)
    a=args(pb,splits,kchunk,True,False)
    ws=[float('nan')]*(splits*out if splits>1 else 1)
    conv_wgrad(a,x,dy,dw,ws,(tiles[1],tiles[0],splits))
    if splits>1: reduce(ws,splits,out,dw,None,1,1,True,False)

# ---- naive references
def ref_conv(pb,x,w):
    n,ci_,h,wd,co_,ho,wo,k,s,p=[pb[q] for q in 'n cin h w cout ho wo k s p'.split()]
    y=[0.0]*(n*co_*ho*wo)
    for b in range(n):
        for co in range(co_):
            for oh in range(ho):
                for ow in range(wo):
                    acc=0.0
                    for ci in range(ci_):
                        for ki in range(k):
                            ih=oh*s-p+ki
                            if not 0<=ih<h: continue
                            for kj in range(k):
                                iw=ow*s-p+kj
                                if 0<=iw<wd: acc+=w[((co*ci_+ci)*k+ki)*k+kj]*x[((b*ci_+ci)*h+ih)*wd+iw]
                    y[((b*co_+co)*ho+oh)*wo+ow]=acc
    return y
def ref_dgrad(pb,dy,w):
    n,ci_,h,wd,co_,ho,wo,k,s,p=[pb[q] for q in 'n cin h w cout ho wo k s p'.split()]
    dx=[0.0]*(n*ci_*h*wd)
    for b in range(n):
        for co in range(co_):
            for oh in range(ho):
                for ow in range(wo):
                    g=dy[((b*co_+co)*ho+oh)*wo+ow]
                    for ci in range(ci_):
                        for ki in range(k):
                            ih=oh*s-p+ki
                            if not 0<=ih<h: continue
                            for kj in range(k):
                                iw=ow*s-p+kj
                                if 0<=iw<wd: dx[((b*ci_+ci)*h+ih)*wd+iw]+=w[((co*ci_+ci)*k+ki)*k+kj]*g
    return dx
def ref_wgrad(pb,x,dy):
    n,ci_,h,wd,co_,ho,wo,k,s,p=[pb[q] for q in 'n cin h w cout ho wo k s p'.split()]
    dw=[0.0]*(co_*ci_*k*k)
    for b in range(n):
        for co in range(co_):
            for oh in range(ho):
                for ow in range(wo):
                    g=dy[((b*co_+co)*ho+oh)*wo+ow]
                    for ci in range(ci_):
                        for ki in range(k):
                            ih=oh*s-p+ki
                            if not 0<=ih<h: continue
                            for kj in range(k):
                                iw=ow*s-p+kj
                                if 0<=iw<wd: dw[((co*ci_+ci)*k+ki)*k+kj]+=x[((b*ci_+ci)*h+ih)*wd+iw]*g
    return dw

def err(a,b):
    num=sum((x-y)**2 for x,y in zip(a,b)); den=sum(y*y for y in b)
    if any(v!=v for v in a): return float('inf')
    return math.sqrt(num/max(den,1e-30))

R=random.Random(1)
def rv(n): return [R.uniform(-1,1) for _ in range(n)]
cases=[ # n cin cout h w k s p (h,w are conv input dims; ho/wo derived)
 (2,5,7,9,11,4,2,1),(1,3,70,8,8,4,2,1),(2,5,6,9,7,3,1,1),(2,4,6,13,8,5,3,2),(1,3,4,7,7,2,2,0),(2,3,5,6,5,3,2,0),(1,2,3,5,5,1,1,0),(1,66,65,4,4,4,2,1),(1,4,3,1,1,4,2,1),(1,3,2,4,4,4,1,1),
]
bad=0
for (n,ci,co,h,w,k,s,p) in cases:
    ho=(h+2*p-k)//s+1; wo=(w+2*p-k)//s+1
    pb=dict(n=n,cin=ci,h=h,w=w,cout=co,ho=ho,wo=wo,k=k,s=s,p=p)
    x=rv(n*ci*h*w); W=rv(co*ci*k*k); dy=rv(n*co*ho*wo); bias=rv(max(co,ci))
    yr=ref_conv(pb,x,W); dxr=ref_dgrad(pb,dy,W); dwr=ref_wgrad(pb,x,dy)
    for force in (None,3):
        y=[float('nan')]*len(yr); gemm_fwd(pb,x,W,None,y,False,force)
        yb=[float('nan')]*len(yr); gemm_fwd(pb,x,W,bias[:co],yb,False,force)
        yrb=[v+bias[(i//(ho*wo))%co] for i,v in enumerate(yr)]
        y0=rv(len(yr)); ya=list(y0); gemm_fwd(pb,x,W,None,ya,True,force)
        dx=[float('nan')]*len(dxr); gemm_dgrad(pb,dy,W,None,dx,False,force)
        dxb=[float('nan')]*len(dxr); gemm_dgrad(pb,dy,W,bias[:ci],dxb,False,force)
        dxrb=[v+bias[(i//(h*w))%ci] for i,v in enumerate(dxr)]
        d0=rv(len(dxr)); dxa=list(d0); gemm_dgrad(pb,dy,W,None,dxa,True,force)
        g0=rv(len(dwr)); dw=list(g0); gemm_wgrad(pb,x,dy,dw,force)
        es=[err(y,yr),err(yb,yrb),err(ya,[a+b for a,b in zip(y0,yr)]),err(dx,dxr),err(dxb,dxrb),err(dxa,[a+b for a,b in zip(d0,dxr)]),err(dw,[a+b for a,b in zip(g0,dwr)])]
        ok=all(e<1e-9 for e in es); bad+= not ok
        print(('ok ' if ok else 'BAD'),pb,'force',force,['%.1e'%e for e in es]); sys.stdout.flush()
print('bad',bad)
