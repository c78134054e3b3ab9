import math, time, torch
from ladtheory import bandit, reductions
torch.set_num_threads(1)
D=torch.float64
K=50
cfg=bandit.BanditConfig(bumps=(bandit.Bump(10,2,1),bandit.Bump(25,2,1),bandit.Bump(40,2,1)))
A=bandit.advantage(cfg)
theta0=-torch.arange(K,dtype=D)*math.log(4)/(K-1)
eta=0.25
def report(name,th):
    p=torch.softmax(th,0)
    win=[p[c-3:c+4].sum().item() for c in (10,25,40)]
    print(f"{name:12s} peaks {p[10]:.3g} {p[25]:.3g} {p[40]:.3g} ratios {p[25]/p[10]:.4f} {p[40]/p[10]:.4f} win {sum(win):.4f} winratios {win[1]/win[0]:.4f} {win[2]/win[0]:.4f} EA {float(p@A):.4f}")
p0=torch.softmax(theta0,0); report("pi0",theta0)
def lad_exact(th,lo):
    return reductions.lad_exact_loss(torch.log_softmax(th,0),lo,A,eta,"js")
def to_target(th):
    lo=torch.log_softmax(th,0).detach()
    x=th.detach().clone().requires_grad_(True)
    opt=torch.optim.LBFGS([x],lr=1,max_iter=500,tolerance_grad=1e-15,tolerance_change=0,history_size=50,line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad(); l=lad_exact(x,lo); l.backward(); return l
    opt.step(closure)
    tgt=torch.log_softmax(lo+A/eta,0)
    dev=(torch.log_softmax(x.detach(),0)-tgt).abs().max().item()
    return x.detach(),dev
t=time.time(); th=theta0.clone(); devs=[]
for k in range(30):
    th,dev=to_target(th); devs.append(dev)
print("lbfgs time",time.time()-t,"max dev",max(devs))
report("lad-target",th)
closed=torch.log_softmax(theta0+30*A/eta,0); print("vs closed", (torch.log_softmax(th,0)-closed).abs().max().item())
def steps(th,kind,n,lr):
    lo=torch.log_softmax(th,0).detach(); w=lo.exp()
    x=th.detach().clone().requires_grad_(True)
    for _ in range(n):
        lp=torch.log_softmax(x,0)
        if kind=="lad": l=reductions.lad_exact_loss(lp,lo,A,eta,"js")
        else:
            adv=bandit.normalised(A,w,unbiased=False); l,_=bandit.grpo_surrogate(lp,lo,adv,w)
        g,=torch.autograd.grad(l,x)
        with torch.no_grad(): x-=lr*g
    return x.detach()
for kind in ("lad","grpo"):
    for n,lr,R in ((1,2.0,3000),(8,2.0,400)):
        t=time.time(); th=theta0.clone()
        for k in range(R): th=steps(th,kind,n,lr)
        report(f"{kind}-{n}x{R}",th); print(" time",time.time()-t)
print("----")
def to_target2(th, iters):
    lo=torch.log_softmax(th,0).detach()
    x=th.detach().clone().requires_grad_(True)
    opt=torch.optim.LBFGS([x],lr=1,max_iter=iters,tolerance_grad=1e-14,tolerance_change=0,history_size=50,line_search_fn="strong_wolfe")
    def closure():
        opt.zero_grad(); l=lad_exact(x,lo); l.backward(); return l
    opt.step(closure)
    tgt=torch.softmax(lo+A/eta,0)
    return x.detach(), 0.5*(torch.softmax(x.detach(),0)-tgt).abs().sum().item()
for iters in (50,200):
    t=time.time(); th=theta0.clone(); tvs=[]
    for k in range(30):
        th,tv=to_target2(th,iters); tvs.append(tv)
    print(iters,"time",time.time()-t,"max tv",max(tvs)); report("lad-target",th)
def adam_round(th,S,lr):
    lo=torch.log_softmax(th,0).detach()
    x=th.detach().clone().requires_grad_(True); opt=torch.optim.Adam([x],lr=lr)
    for _ in range(S):
        opt.zero_grad(); l=lad_exact(x,lo); l.backward(); opt.step()
    tgt=torch.softmax(lo+A/eta,0)
    return x.detach(), 0.5*(torch.softmax(x.detach(),0)-tgt).abs().sum().item()
for S,lr in ((50,0.1),(200,0.05)):
    t=time.time(); th=theta0.clone(); tvs=[]
    for k in range(30):
        th,tv=adam_round(th,S,lr); tvs.append(tv)
    print("adam",S,lr,"time",time.time()-t,"max tv",max(tvs)); report("lad-adam",th)
