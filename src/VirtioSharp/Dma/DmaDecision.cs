namespace VirtioSharp.Dma;

/// <summary>What the policy decided for one device, and why.</summary>
public sealed record DmaDecision
{
    public required bool Refused { get; init; }
    public required DmaOpsKind Ops { get; init; }
    public required bool NonCoherentOps { get; init; }
    /// <summary>False only in <see cref="PolicyMode.PreRfc"/>: the device gets raw GPAs and no platform hooks.</summary>
    public required bool UsesDmaApi { get; init; }
    public required BarrierKind Barriers { get; init; }
    /// <summary>The features the driver should write back (offered ∩ wanted, with the policy's requirements applied).</summary>
    public required ulong Features { get; init; }
    public required IReadOnlyList<string> Reasons { get; init; }
    public InvalidationMode Invalidation { get; init; }
    public ulong DmaOffset { get; init; }

    public string Summary => Refused
        ? "refused"
        : $"{(UsesDmaApi ? "" : "no DMA API, ")}{OpsName} ops{(NonCoherentOps ? " (non-coherent)" : "")}, {(Barriers == BarrierKind.Platform ? "platform" : "SMP")} barriers";

    internal string OpsName => Ops switch
    {
        DmaOpsKind.Iommu => Invalidation == InvalidationMode.Strict ? "iommu" : "iommu(lazy)",
        DmaOpsKind.Bounce => "bounce",
        _ => DmaOffset == 0 ? "direct" : $"direct(+0x{DmaOffset:x})",
    };
}
