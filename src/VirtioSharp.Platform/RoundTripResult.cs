using VirtioSharp.Dma;

namespace VirtioSharp.Platform;

/// <summary>What a <see cref="RoundTrip"/> run did: the policy's decision, how many chains made it back intact, and the counters that explain the rest.</summary>
public sealed record RoundTripResult
{
    /// <summary>The setup's name.</summary>
    public required string Name { get; init; }
    /// <summary>What the DMA policy decided.</summary>
    public required DmaDecision Decision { get; init; }
    /// <summary>Name of the DMA ops used ("-" when refused).</summary>
    public string Ops { get; init; } = "-";
    /// <summary>Chains the driver submitted.</summary>
    public int Attempted { get; init; }
    /// <summary>Chains the device returned.</summary>
    public int Completed { get; init; }
    /// <summary>Returned chains whose data checked out on both sides.</summary>
    public int Verified { get; init; }
    /// <summary>IOMMU faults logged during the run.</summary>
    public long IommuFaults { get; init; }
    /// <summary>Bytes copied through the bounce pool.</summary>
    public long BounceBytes { get; init; }
    /// <summary>Device accesses to private pages of a protected guest.</summary>
    public long ProtectionViolations { get; init; }
    /// <summary>IOTLB hits of the device's domain.</summary>
    public long IotlbHits { get; init; }
    /// <summary>IOTLB misses of the device's domain.</summary>
    public long IotlbMisses { get; init; }
    /// <summary>The device stopped answering.</summary>
    public bool Hung { get; init; }
    /// <summary>What went wrong, if something threw or a queue broke.</summary>
    public string? Error { get; init; }
    /// <summary>Lines that show why the outcome is what it is.</summary>
    public IReadOnlyList<string> Evidence { get; init; } = [];

    /// <summary>Every chain came back verified and nothing went wrong.</summary>
    public bool Clean => !Decision.Refused && Error is null && !Hung && Verified == Attempted && Attempted > 0;
    /// <summary>One word: refused, hang, error, ok or corrupt.</summary>
    public string Outcome => Decision.Refused ? "refused"
        : Hung ? "hang"
        : Error is not null ? "error"
        : Verified == Completed && Completed == Attempted ? "ok"
        : "corrupt";
}
