"""The PyTorch peer (seed_torch.py, the same network) timed on the GPU."""
import sys, time
import torch
batch, steps = int(sys.argv[1]), int(sys.argv[2])
import seed_torch  # reads GROUPED from sys.argv
net = seed_torch.seed_net().cuda()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, 3, 32, 32, device='cuda'); y = torch.randint(0, 10, (batch,), device='cuda')
lossf = torch.nn.CrossEntropyLoss()
def step():
    opt.zero_grad(set_to_none=True); loss = lossf(net(x), y); loss.backward(); opt.step()
for _ in range(20): step()
rates = []
for _ in range(5):
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize(); rates.append(batch * steps / (time.perf_counter() - t))
rates.sort()
print(f'torch-gpu grouped={seed_torch.GROUPED} batch={batch} train_img_per_s={rates[2]:.1f} all={[round(r) for r in rates]} {torch.cuda.get_device_name()}')
