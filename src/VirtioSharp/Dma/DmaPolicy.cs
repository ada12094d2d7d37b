using VirtioSharp.Spec;

namespace VirtioSharp.Dma;

/// <summary>
/// Chooses the DMA ops for a device from its features, its transport and the platform. The rules and their sources:
/// virtio 1.2 §6.1 (ACCESS_PLATFORM, ORDER_PLATFORM), the 2018 "virtio: use DMA API for all devices" RFC, Linux's
/// virtio_features_ok / arch_has_restricted_virtio_memory_access check, and the legacy-behind-IOMMU quirk.
/// </summary>
public static class DmaPolicy
{
    private const ulong Low32 = 0xFFFF_FFFFUL;

    /// <summary>Whether <paramref name="t"/> is a legacy (pre-1.0) transport, which cannot negotiate ACCESS_PLATFORM.</summary>
    public static bool IsLegacyTransport(TransportKind t) => t is TransportKind.MmioLegacy or TransportKind.PciLegacy;

    /// <summary>Decides the DMA ops, barriers and features for one device, as the Linux virtio core would.</summary>
    /// <param name="platform">The machine and where the device sits in it.</param>
    /// <param name="transport">How the device is attached.</param>
    /// <param name="offered">Device features.</param>
    /// <param name="wanted">Features the driver supports (device-specific and ring bits); the policy adds the platform bits.</param>
    /// <param name="mode">Which kernel behaviour to model.</param>
    public static DmaDecision Decide(PlatformFacts platform, TransportKind transport, ulong offered, ulong wanted, PolicyMode mode = PolicyMode.LinuxToday)
    {
        var reasons = new List<string>();
        bool legacyTransport = IsLegacyTransport(transport);
        ulong usable = offered;
        if (legacyTransport)
        {
            if ((offered & ~Low32) != 0)
                reasons.Add($"legacy interface carries only 32 feature bits: {VirtioFeature.Describe(offered & ~Low32)} cannot be negotiated");
            usable &= Low32;
        }

        // The driver accepts the device-independent bits the policy owns whenever they are offered (§6.1: a driver
        // SHOULD accept ACCESS_PLATFORM and ORDER_PLATFORM if offered).
        ulong policyBits = VirtioFeature.Bit(VirtioFeature.AccessPlatform) | VirtioFeature.Bit(VirtioFeature.OrderPlatform);
        if (!legacyTransport) policyBits |= VirtioFeature.Bit(VirtioFeature.Version1);
        ulong features = usable & (wanted | policyBits);
        bool version1 = VirtioFeature.Has(features, VirtioFeature.Version1);
        bool accessPlatform = VirtioFeature.Has(features, VirtioFeature.AccessPlatform);
        bool orderPlatform = VirtioFeature.Has(features, VirtioFeature.OrderPlatform);
        reasons.Add($"transport {transport}: {(version1 ? "modern (VERSION_1)" : "legacy (no VERSION_1)")}; platform: {platform.Describe()}; policy: {mode}");
        reasons.Add(accessPlatform
            ? "ACCESS_PLATFORM negotiated: the device accesses memory through the platform (IOMMU, bounce pool, DMA offsets), so the driver must use the platform's DMA ops"
            : "ACCESS_PLATFORM not negotiated: the device is trusted to access guest-physical memory as is");

        var barriers = orderPlatform ? BarrierKind.Platform : BarrierKind.Smp;
        reasons.Add(orderPlatform
            ? "ORDER_PLATFORM negotiated: the device may be real hardware, so ring publication uses platform (mandatory) barriers"
            : "ORDER_PLATFORM not negotiated: SMP barriers suffice (the device is software on another CPU)");
        if (!orderPlatform && (platform.BehindIommu && !platform.IommuBypass || !platform.Coherent) && accessPlatform)
            reasons.Add("warning: the device looks like hardware (IOMMU or non-coherent) but did not offer ORDER_PLATFORM; SMP barriers may be too weak for it");

        DmaDecision Make(DmaOpsKind ops, bool nonCoherent, bool usesDmaApi = true) => new()
        {
            Refused = false,
            Ops = ops,
            NonCoherentOps = nonCoherent,
            UsesDmaApi = usesDmaApi,
            Barriers = barriers,
            Features = features,
            Reasons = reasons,
            Invalidation = platform.Invalidation,
            DmaOffset = ops == DmaOpsKind.Direct && accessPlatform ? platform.DmaOffset : 0,
        };
        DmaDecision Refuse(string why)
        {
            reasons.Add("refused: " + why);
            return new DmaDecision
            {
                Refused = true, Ops = DmaOpsKind.Direct, NonCoherentOps = false, UsesDmaApi = true,
                Barriers = barriers, Features = features, Reasons = reasons,
            };
        }

        bool translated = platform.BehindIommu && !platform.IommuBypass;
        if (platform.BehindIommu && platform.IommuBypass)
            reasons.Add("the IOMMU is in bypass for this device: bus addresses are guest-physical addresses");

        if (accessPlatform)
        {
            if (!version1)
                return Refuse("ACCESS_PLATFORM without VERSION_1 is not a valid feature set (§6.1)");
            bool nonCoherent = !platform.Coherent;
            if (nonCoherent)
                reasons.Add("the platform says the device does not snoop CPU caches: wrapping the ops with cache clean/invalidate");
            if (platform.RestrictedMemory)
            {
                if (translated)
                    return Refuse("protected memory behind a translating IOMMU needs IOMMU ops that also bounce, which this policy does not provide; put the IOMMU in bypass for this device");
                reasons.Add("restricted memory: the host can read only shared pages, so buffers bounce through the shared swiotlb pool and rings are allocated shared");
                return Make(DmaOpsKind.Bounce, nonCoherent);
            }
            if (translated)
            {
                reasons.Add($"device is behind an IOMMU: IOMMU ops map each buffer to an IOVA with direction-limited permissions, {(platform.Invalidation == InvalidationMode.Strict ? "invalidating the IOTLB at every unmap (strict)" : "batching IOTLB invalidations (lazy)")}");
                return Make(DmaOpsKind.Iommu, nonCoherent);
            }
            reasons.Add(platform.DmaOffset != 0
                ? $"no translating IOMMU: direct ops with the platform's bus offset 0x{platform.DmaOffset:x}"
                : "no translating IOMMU and unrestricted memory: direct ops (bus address = guest-physical address)");
            return Make(DmaOpsKind.Direct, nonCoherent);
        }

        // No ACCESS_PLATFORM: the device is the hypervisor itself. It is coherent whatever the firmware says, because
        // the "device" is software reading memory through the host's caches.
        if (!platform.Coherent)
            reasons.Add("the platform describes the device as non-coherent, but without ACCESS_PLATFORM it is emulated by the hypervisor and snoops caches: using coherent ops (non-coherent ops would invalidate away the device's writes)");

        if (platform.RestrictedMemory)
        {
            switch (mode)
            {
                case PolicyMode.LinuxToday:
                    return Refuse($"the platform restricts memory access (protected guest) and the device lacks {(version1 ? "" : "VERSION_1 and ")}ACCESS_PLATFORM, so it would read private memory; offer VIRTIO_F_ACCESS_PLATFORM (iommu_platform=on) on the device");
                case PolicyMode.Rfc2018:
                    reasons.Add("RFC platform hook: restricted memory forces bounce ops even without ACCESS_PLATFORM, so the device only ever sees the shared pool");
                    return Make(DmaOpsKind.Bounce, false);
                default:
                    reasons.Add("warning: no DMA API: the device will be handed private guest-physical addresses it cannot read");
                    return Make(DmaOpsKind.Direct, false, usesDmaApi: false);
            }
        }

        if (translated)
        {
            if (platform.LegacyIommuQuirk && mode != PolicyMode.PreRfc)
            {
                reasons.Add("quirk: device is known to sit behind an IOMMU without saying so (legacy virtio-mmio behind an SMMU): coherent IOMMU ops");
                return Make(DmaOpsKind.Iommu, false);
            }
            reasons.Add("warning: the device is behind a translating IOMMU but did not negotiate ACCESS_PLATFORM: it will be handed guest-physical addresses the IOMMU has no mapping for and its DMA will fault (the 2018 boot hang); enable the legacy-IOMMU quirk, put the IOMMU in bypass, or offer ACCESS_PLATFORM");
        }

        if (mode == PolicyMode.PreRfc)
        {
            reasons.Add("pre-RFC driver: no DMA API, raw guest-physical addresses");
            return Make(DmaOpsKind.Direct, false, usesDmaApi: false);
        }
        reasons.Add("direct ops: bus address = guest-physical address (every device still goes through DMA ops)");
        return Make(DmaOpsKind.Direct, false);
    }
}
