namespace VirtioSharp.Dma;

/// <summary>
/// Lock for the short bookkeeping sections of DMA ops (IOVA bitmap, bounce slots): one atomic to enter and a release
/// store to leave. <see cref="Lock"/> costs two atomics plus owner tracking per pair, which was about a third of an
/// IOMMU round trip. Not reentrant; spins, then yields (SpinWait), so a preempted holder is not starved on few cores.
/// </summary>
internal struct SpinGate
{
    private int _held;

    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _held, 1, 0) != 0) EnterContended();
    }

    private void EnterContended()
    {
        var spin = new SpinWait();
        do spin.SpinOnce();
        while (Volatile.Read(ref _held) != 0 || Interlocked.CompareExchange(ref _held, 1, 0) != 0);
    }

    public void Exit() => Volatile.Write(ref _held, 0);
}
