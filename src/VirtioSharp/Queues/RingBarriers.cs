using System.Runtime.CompilerServices;
using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.Queues;

/// <summary>
/// The driver side's ring barriers at the negotiated strength. Production (no model): a publishing store is a release
/// store, which is the SMP write barrier, so <see cref="Publish"/> adds a fence only for platform strength; with a
/// simulated platform's <see cref="ICpuOrdering"/> every barrier is reported to it instead, as the ordering it asks for.
/// </summary>
internal readonly struct RingBarriers(BarrierKind kind, ICpuOrdering? model)
{
    /// <summary>virtio_wmb(weak_barriers): everything written so far before the store that publishes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Publish()
    {
        if (model is not null) model.Barrier(BarrierOp.Write, kind);
        else if (kind == BarrierKind.Platform) Interlocked.MemoryBarrier();
    }

    /// <summary>Ring memory the driver writes through host pointers: the model watches it (nothing in production).</summary>
    public void Track(CoherentBuffer b) => model?.Track(b.Gpa, b.Size);

    /// <summary>Frees ring memory given to <see cref="Track"/>.</summary>
    public void Free(IDmaOps dma, CoherentBuffer b)
    {
        model?.Untrack(b.Gpa, b.Size);
        dma.FreeCoherent(b);
    }

    /// <summary>virtio_mb(weak_barriers): our stores before reading the peer's state.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Full()
    {
        model?.Barrier(BarrierOp.Full, kind);
        Interlocked.MemoryBarrier();
    }
}
