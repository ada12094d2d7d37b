namespace VirtioSharp.Dma;

/// <summary>Builds the ops a <see cref="DmaDecision"/> names from the platform's resources.</summary>
public static class DmaOpsFactory
{
    /// <summary>Creates the ops <paramref name="decision"/> names, wrapped for cache maintenance if it asks for that.</summary>
    /// <param name="decision">What the policy decided; must not be refused.</param>
    /// <param name="platform">The machine the ops run on.</param>
    /// <param name="domain">The device's IOMMU domain; required for IOMMU ops.</param>
    /// <param name="bouncePool">The platform's shared pool; required for bounce ops.</param>
    public static IDmaOps Create(DmaDecision decision, IDmaPlatform platform, IIommuDomain? domain = null, BouncePool? bouncePool = null)
    {
        if (decision.Refused)
            throw new InvalidOperationException("the DMA policy refused this device; no ops can be created: " + decision.Reasons[^1]);
        IDmaOps ops = decision.Ops switch
        {
            DmaOpsKind.Iommu => new IommuDmaOps(platform,
                domain ?? throw new ArgumentException("IOMMU ops were chosen but the device has no IOMMU domain", nameof(domain)),
                decision.Invalidation),
            DmaOpsKind.Bounce => new BounceDmaOps(
                bouncePool ?? throw new ArgumentException("bounce ops were chosen but the platform has no bounce pool", nameof(bouncePool))),
            // Without the DMA API the driver also skips the platform's hooks: nothing is shared, nothing is maintained.
            _ => new DirectDmaOps(decision.UsesDmaApi ? platform : new PlainDmaPlatform(platform.Ram, platform.Allocator), decision.DmaOffset),
        };
        return decision.NonCoherentOps ? new NonCoherentDmaOps(ops, platform) : ops;
    }
}
