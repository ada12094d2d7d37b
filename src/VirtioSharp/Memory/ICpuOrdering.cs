using VirtioSharp.Dma;

namespace VirtioSharp.Memory;

/// <summary>
/// Where a driver's ring barriers go when a simulated platform models the CPU's store buffer (production queues have
/// none and fence directly). The driver writes its rings through host pointers; the model decides which of those stores
/// a device can see yet, so a missing or too-weak barrier shows as a stale descriptor or index.
/// </summary>
public interface ICpuOrdering
{
    /// <summary>A ring barrier the driver asked for: <paramref name="op"/> at <paramref name="strength"/>.</summary>
    void Barrier(BarrierOp op, BarrierKind strength);
    /// <summary>The driver allocated ring memory (rings, indirect tables) at guest-physical [gpa, gpa+length) that it writes through host pointers.</summary>
    void Track(ulong gpa, ulong length);
    /// <summary>The driver freed ring memory given to <see cref="Track"/>.</summary>
    void Untrack(ulong gpa, ulong length);
}
