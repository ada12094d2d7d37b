using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>
/// A simulated machine: guest RAM and its page allocator, optionally an IOMMU, protected memory and a CPU cache, and a
/// bounce pool. Devices attach to it and get their own view of memory. Driver and device run on the caller's thread.
/// </summary>
public sealed class SimPlatform : IDmaPlatform, IDisposable
{
    /// <summary>A machine as <paramref name="options"/> describe it.</summary>
    public SimPlatform(SimPlatformOptions options)
    {
        Options = options;
        Ram = GuestMemory.Create(options.RamSize);
        Allocator = new GuestAllocator(0, options.RamSize);
        if (options.HasIommu) Iommu = new Iommu();
        if (options.Protection is { } mode) Protection = new ProtectedMemory(Ram, mode);
        if (options.CpuCache) Cache = new CpuCache(Ram);
        if (options.Ordering is { } order) Ordering = new StoreBufferModel(Ram, order);
        if (options.BouncePoolSize > 0) BouncePool = new BouncePool(this, options.BouncePoolSize);
    }

    /// <summary>How the machine was configured.</summary>
    public SimPlatformOptions Options { get; }
    /// <inheritdoc/>
    public GuestMemory Ram { get; }
    /// <inheritdoc/>
    public GuestAllocator Allocator { get; }
    internal Iommu? Iommu { get; }
    internal ProtectedMemory? Protection { get; }
    internal CpuCache? Cache { get; }
    /// <summary>The memory-ordering model, if configured: drivers report their barriers to it, devices' ports go through it.</summary>
    public StoreBufferModel? Ordering { get; }
    /// <summary>The shared swiotlb pool, if configured.</summary>
    public BouncePool? BouncePool { get; }
    /// <summary>The CPU's view: through the cache when there is one.</summary>
    public ICpuMemory Cpu => (ICpuMemory?)Cache ?? Ram;

    /// <inheritdoc/>
    public void SetShared(ulong gpa, ulong length, bool shared) => Protection?.SetShared(gpa, length, shared);
    /// <inheritdoc/>
    public void CacheClean(ulong gpa, ulong length) => Cache?.Clean(gpa, length);
    /// <inheritdoc/>
    public void CacheInvalidate(ulong gpa, ulong length) => Cache?.Invalidate(gpa, length);
    /// <inheritdoc/>
    public void SetUncached(ulong gpa, ulong length, bool uncached) => Cache?.SetUncached(gpa, length, uncached);

    /// <summary>
    /// Plugs a device in. <paramref name="coherent"/> is what the device really is (whether it snoops the CPU cache);
    /// the firmware's description given to the DMA policy may differ, which is how mismatches are reproduced.
    /// </summary>
    public SimDevice Attach(string name, bool behindIommu = false, bool iommuBypass = false, bool coherent = true, ulong dmaOffset = 0)
    {
        if (behindIommu && Iommu is null) throw new InvalidOperationException("this platform has no IOMMU; create it with HasIommu = true");
        IommuDomain? domain = behindIommu ? Iommu!.CreateDomain(name, iommuBypass) : null;
        IAddressTranslator translator = domain is not null ? domain
            : dmaOffset != 0 ? new OffsetTranslator(dmaOffset) : IdentityTranslator.Instance;
        return new SimDevice(this, name, domain, translator, new SimBusPort(this, name, coherent), coherent);
    }

    /// <summary>Frees guest RAM.</summary>
    public void Dispose() => Ram.Dispose();
}
