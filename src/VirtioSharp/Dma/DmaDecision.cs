namespace VirtioSharp.Dma;

/// <summary>What the policy decided for one device, and why.</summary>
public sealed record DmaDecision
{
    /// <summary>The device may not be used (e.g. a protected guest and a device without ACCESS_PLATFORM).</summary>
    public required bool Refused { get; init; }
    /// <summary>Which ops the device gets.</summary>
    public required DmaOpsKind Ops { get; init; }
    /// <summary>Wrap the ops in cache maintenance: the device does not snoop CPU caches.</summary>
    public required bool NonCoherentOps { get; init; }
    /// <summary>False only in <see cref="PolicyMode.PreRfc"/>: the device gets raw GPAs and no platform hooks.</summary>
    public required bool UsesDmaApi { get; init; }
    /// <summary>Memory barriers the rings need: platform (ORDER_PLATFORM, real DMA) or SMP.</summary>
    public required BarrierKind Barriers { get; init; }
    /// <summary>The features the driver should write back (offered ∩ wanted, with the policy's requirements applied).</summary>
    public required ulong Features { get; init; }
    /// <summary>Why the policy decided as it did, one line a step; the last explains a refusal.</summary>
    public required IReadOnlyList<string> Reasons { get; init; }
    /// <summary>IOTLB invalidation for IOMMU ops.</summary>
    public InvalidationMode Invalidation { get; init; }
    /// <summary>GPA→bus offset for direct ops.</summary>
    public ulong DmaOffset { get; init; }

    /// <summary>One line for logs and tables.</summary>
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
