using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>Configuration of a simulated machine.</summary>
public sealed record SimPlatformOptions
{
    public ulong RamSize { get; init; } = 64UL << 20;
    public bool HasIommu { get; init; }
    /// <summary>Protected guest memory; null for an ordinary guest.</summary>
    public ProtectionMode? Protection { get; init; }
    /// <summary>A write-back CPU cache that non-coherent devices do not snoop.</summary>
    public bool CpuCache { get; init; }
    /// <summary>Size of the shared swiotlb pool (0: none).</summary>
    public ulong BouncePoolSize { get; init; } = 1UL << 20;
}

/// <summary>
/// A simulated machine: guest RAM and its page allocator, optionally an IOMMU, protected memory and a CPU cache, and a
/// bounce pool. Devices attach to it and get their own view of memory. Driver and device run on the caller's thread.
/// </summary>
public sealed class SimPlatform : IDmaPlatform, IDisposable
{
    public SimPlatform(SimPlatformOptions options)
    {
        Options = options;
        Ram = GuestMemory.Create(options.RamSize);
        Allocator = new GuestAllocator(0, options.RamSize);
        if (options.HasIommu) Iommu = new Iommu();
        if (options.Protection is { } mode) Protection = new ProtectedMemory(Ram, mode);
        if (options.CpuCache) Cache = new CpuCache(Ram);
        if (options.BouncePoolSize > 0) BouncePool = new BouncePool(this, options.BouncePoolSize);
    }

    public SimPlatformOptions Options { get; }
    public GuestMemory Ram { get; }
    public GuestAllocator Allocator { get; }
    public Iommu? Iommu { get; }
    public ProtectedMemory? Protection { get; }
    public CpuCache? Cache { get; }
    public BouncePool? BouncePool { get; }
    /// <summary>The CPU's view: through the cache when there is one.</summary>
    public ICpuMemory Cpu => (ICpuMemory?)Cache ?? Ram;

    public void SetShared(ulong gpa, ulong length, bool shared) => Protection?.SetShared(gpa, length, shared);
    public void CacheClean(ulong gpa, ulong length) => Cache?.Clean(gpa, length);
    public void CacheInvalidate(ulong gpa, ulong length) => Cache?.Invalidate(gpa, length);
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

    public void Dispose() => Ram.Dispose();
}

/// <summary>A device plugged into a <see cref="SimPlatform"/>, with the memory view it must use.</summary>
public sealed class SimDevice(SimPlatform platform, string name, IommuDomain? domain, IAddressTranslator translator, SimBusPort port, bool coherent)
{
    public SimPlatform Platform { get; } = platform;
    public string Name { get; } = name;
    public IommuDomain? Domain { get; } = domain;
    public bool Coherent { get; } = coherent;
    public SimBusPort Port { get; } = port;
    public IAddressTranslator Translator { get; } = translator;

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

/// <summary>Bus address = GPA + offset (a dma-ranges window), as the device sees it.</summary>
public sealed class OffsetTranslator(ulong offset) : IAddressTranslator
{
    public ulong Offset => offset;
    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous)
    {
        gpa = addr - offset;
        contiguous = ulong.MaxValue - addr;
        if (contiguous == 0) contiguous = 1;
        return addr < offset ? MemStatus.Unmapped : MemStatus.Ok;
    }
}

/// <summary>
/// A device's port onto the simulated bus: enforces protected pages (fault or ciphertext) and, for a coherent device,
/// snoops the CPU cache.
/// </summary>
public sealed class SimBusPort(SimPlatform platform, string device, bool coherent) : IPhysicalPort
{
    private const ulong PageSize = 4096;
    private readonly GuestMemory _ram = platform.Ram;
    private readonly ProtectedMemory? _prot = platform.Protection;
    private readonly CpuCache? _cache = coherent ? platform.Cache : null;

    private MemStatus CheckProtection(ulong gpa, ulong len, Access access)
    {
        if (_prot is null || _prot.Mode != ProtectionMode.Fault) return MemStatus.Ok;
        for (ulong p = gpa & ~(PageSize - 1); p < gpa + len; p += PageSize)
            if (!_prot.IsShared(p))
            {
                _prot.RecordViolation(device, p, access);
                return MemStatus.ProtectedPage;
            }
        return MemStatus.Ok;
    }

    public MemStatus Check(ulong gpa, ulong len, Access access)
    {
        if (gpa + len < gpa) return MemStatus.Overflow;
        if (!_ram.IsBacked(gpa, len)) return MemStatus.Unmapped;
        return CheckProtection(gpa, len, access);
    }

    public MemStatus Read(ulong gpa, Span<byte> dst)
    {
        var st = Check(gpa, (ulong)dst.Length, Access.Read);
        if (st != MemStatus.Ok) return st;
        if (_cache is not null) _cache.SnoopRead(gpa, dst);
        else _ram.Read(gpa, dst);
        if (_prot is not null) ScramblePrivate(gpa, dst, Access.Read);
        return MemStatus.Ok;
    }

    public MemStatus Write(ulong gpa, ReadOnlySpan<byte> src)
    {
        var st = Check(gpa, (ulong)src.Length, Access.Write);
        if (st != MemStatus.Ok) return st;
        if (_prot is not null && !_prot.IsShared(gpa, (ulong)src.Length))
        {
            // Writing through the host's key-less view of encrypted memory: the guest will read garbage.
            var tmp = src.ToArray();
            ScramblePrivate(gpa, tmp, Access.Write);
            src = tmp;
        }
        if (_cache is not null) _cache.SnoopWrite(gpa, src);
        else _ram.Write(gpa, src);
        return MemStatus.Ok;
    }

    private void ScramblePrivate(ulong gpa, Span<byte> data, Access access)
    {
        bool touched = false;
        for (int i = 0; i < data.Length;)
        {
            ulong a = gpa + (ulong)i;
            int n = (int)Math.Min(PageSize - (a & (PageSize - 1)), (ulong)(data.Length - i));
            if (!_prot!.IsShared(a)) { _prot.Scramble(a, data.Slice(i, n)); touched = true; }
            i += n;
        }
        if (touched) _prot!.RecordViolation(device, gpa, access);
    }

    public MemStatus LoadU16Acquire(ulong gpa, out ushort value)
    {
        value = 0;
        if ((gpa & 1) != 0) return MemStatus.Misaligned;
        Span<byte> b = stackalloc byte[2];
        var st = Read(gpa, b);
        Interlocked.MemoryBarrier();
        if (st == MemStatus.Ok) value = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b);
        return st;
    }

    public MemStatus StoreU16Release(ulong gpa, ushort value)
    {
        if ((gpa & 1) != 0) return MemStatus.Misaligned;
        Interlocked.MemoryBarrier();
        Span<byte> b = stackalloc byte[2];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        return Write(gpa, b);
    }
}
