using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>A device plugged into a <see cref="SimPlatform"/>, with the memory view it must use.</summary>
public sealed class SimDevice(SimPlatform platform, string name, IommuDomain? domain, IAddressTranslator translator, SimBusPort port, bool coherent)
{
    /// <summary>The machine the device is plugged into.</summary>
    public SimPlatform Platform { get; } = platform;
    /// <summary>Name for logs and fault records.</summary>
    public string Name { get; } = name;
    /// <summary>The device's IOMMU domain, if it sits behind the IOMMU.</summary>
    public IommuDomain? Domain { get; } = domain;
    /// <summary>Whether the device really snoops the CPU cache.</summary>
    public bool Coherent { get; } = coherent;
    internal SimBusPort Port { get; } = port;
    internal IAddressTranslator Translator { get; } = translator;

    /// <summary>The device's address space: IOMMU/offset translation, then the bus (protection, cache snooping).</summary>
    public DeviceMemory<TranslatorRef, PortRef> Memory => new(new TranslatorRef(Translator), new PortRef(Port));

    /// <summary>Facts the DMA policy gets about this device; override Coherent to model wrong firmware.</summary>
    public PlatformFacts Facts(bool? firmwareSaysCoherent = null, bool legacyIommuQuirk = false,
        InvalidationMode invalidation = InvalidationMode.Strict, ulong dmaOffset = 0) => new()
    {
        BehindIommu = Domain is not null,
        IommuBypass = Domain?.Bypass ?? false,
        Coherent = firmwareSaysCoherent ?? Coherent,
        RestrictedMemory = Platform.Protection is not null,
        LegacyIommuQuirk = legacyIommuQuirk,
        Invalidation = invalidation,
        DmaOffset = dmaOffset,
    };

    /// <summary>Ops for a policy decision, wired to this device's domain and the platform's bounce pool.</summary>
    public IDmaOps CreateOps(DmaDecision decision) => DmaOpsFactory.Create(decision, Platform, Domain, Platform.BouncePool);
}
