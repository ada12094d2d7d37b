using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>
/// Where a chain's DMA mappings come from when a driver adds it: mapped now (<see cref="SegmentSource"/>) or mapped by
/// the driver beforehand (<see cref="PremappedSource"/>). A generic parameter over ref structs, so the add path is
/// specialised per source with no dispatch.
/// </summary>
internal interface IChainSource
{
    /// <summary>Driver-readable buffers (they come first in the chain).</summary>
    int Readable { get; }
    /// <summary>All buffers.</summary>
    int Total { get; }
    /// <summary>True if the driver owns the mappings (the queue syncs, never unmaps them).</summary>
    bool Premapped { get; }
    /// <summary>Fills <paramref name="maps"/> with one mapping per buffer, or none on failure.</summary>
    DmaStatus Map(IDmaOps dma, ref DmaMapping[]? maps, out uint writableBytes);
}
