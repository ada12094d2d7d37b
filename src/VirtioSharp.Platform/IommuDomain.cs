using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>
/// One device's translation domain. The page table is what the driver programs; the IOTLB is what the device's
/// accesses consult, filled from the table on a miss and emptied only by <see cref="InvalidateRange"/> /
/// <see cref="InvalidateAll"/>. So an unmap without invalidation leaves the device able to reach the freed page.
/// </summary>
public sealed class IommuDomain : IIommuDomain, IAddressTranslator
{
    private const int PageShift = 12;
    private const ulong PageMask = 4095;
    private const ulong PresentBit = 1UL << 63;
    private readonly Iommu _iommu;
    private readonly ulong[] _table;           // per aperture page: present | perms << 60 | gpa pfn
    private readonly ulong[] _tlbTag;          // iova pfn + 1, 0 = empty
    private readonly ulong[] _tlbEntry;        // same encoding as the table
    private readonly int _tlbMask;

    internal IommuDomain(Iommu iommu, string device, ulong apertureBase, ulong apertureSize, int tlbEntries)
    {
        if ((tlbEntries & (tlbEntries - 1)) != 0) throw new ArgumentException("IOTLB entries must be a power of two");
        _iommu = iommu;
        Device = device;
        ApertureBase = apertureBase;
        ApertureSize = apertureSize;
        _table = new ulong[apertureSize >> PageShift];
        _tlbTag = new ulong[tlbEntries];
        _tlbEntry = new ulong[tlbEntries];
        _tlbMask = tlbEntries - 1;
    }

    /// <summary>Name of the device the domain belongs to.</summary>
    public string Device { get; }
    /// <inheritdoc/>
    public ulong ApertureBase { get; }
    /// <inheritdoc/>
    public ulong ApertureSize { get; }
    /// <summary>Pass DMA through untranslated (iommu.passthrough=1, or the device's identity domain).</summary>
    public bool Bypass { get; set; }
    internal long Hits { get; private set; }
    internal long Misses { get; private set; }
    internal long Invalidations { get; private set; }
    internal int MappedPages { get; private set; }

    private bool TryIndex(ulong iova, out ulong index)
    {
        index = (iova - ApertureBase) >> PageShift;
        return iova >= ApertureBase && iova - ApertureBase < ApertureSize;
    }

    /// <inheritdoc/>
    public void MapPage(ulong iova, ulong gpa, Access permissions)
    {
        if ((iova & PageMask) != 0 || (gpa & PageMask) != 0) throw new ArgumentException("IOMMU mappings are page aligned");
        if (!TryIndex(iova, out ulong i)) throw new ArgumentOutOfRangeException(nameof(iova), $"IOVA 0x{iova:x} is outside the domain aperture");
        if ((_table[i] & PresentBit) == 0) MappedPages++;
        _table[i] = PresentBit | ((ulong)permissions << 60) | (gpa >> PageShift);
    }

    /// <inheritdoc/>
    public void UnmapPage(ulong iova)
    {
        if (!TryIndex(iova, out ulong i)) throw new ArgumentOutOfRangeException(nameof(iova), $"IOVA 0x{iova:x} is outside the domain aperture");
        if ((_table[i] & PresentBit) != 0) MappedPages--;
        _table[i] = 0;
    }

    /// <inheritdoc/>
    public void InvalidateRange(ulong iova, ulong length)
    {
        Invalidations++;
        ulong first = iova >> PageShift, last = (iova + length - 1) >> PageShift;
        if (last - first >= (ulong)_tlbTag.Length) { InvalidateAll(); Invalidations--; return; }
        for (ulong pfn = first; pfn <= last; pfn++)
        {
            int slot = (int)(pfn & (ulong)_tlbMask);
            if (_tlbTag[slot] == pfn + 1) _tlbTag[slot] = 0;
        }
    }

    /// <inheritdoc/>
    public void InvalidateAll()
    {
        Invalidations++;
        Array.Clear(_tlbTag);
    }

    /// <summary>Is the IOVA still reachable through the IOTLB (a stale entry counts)?</summary>
    public bool IotlbHolds(ulong iova) => _tlbTag[(int)((iova >> PageShift) & (ulong)_tlbMask)] == (iova >> PageShift) + 1;

    /// <inheritdoc/>
    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous)
    {
        if (Bypass)
        {
            gpa = addr;
            contiguous = addr == 0 ? ulong.MaxValue : ulong.MaxValue - addr + 1;
            return MemStatus.Ok;
        }
        ulong pfn = addr >> PageShift;
        int slot = (int)(pfn & (ulong)_tlbMask);
        ulong entry;
        if (_tlbTag[slot] == pfn + 1)
        {
            Hits++;
            entry = _tlbEntry[slot];
        }
        else
        {
            Misses++;
            if (!TryIndex(addr, out ulong i) || (_table[i] & PresentBit) == 0)
                return Fault(addr, access, MemStatus.TranslationFault, out gpa, out contiguous);
            entry = _table[i];
            _tlbTag[slot] = pfn + 1;
            _tlbEntry[slot] = entry;
        }
        var perms = (Access)((entry >> 60) & 3);
        if ((perms & access) != access)
            return Fault(addr, access, MemStatus.PermissionFault, out gpa, out contiguous);
        gpa = ((entry & ((1UL << 52) - 1)) << PageShift) | (addr & PageMask);
        contiguous = 4096 - (addr & PageMask);
        return MemStatus.Ok;
    }

    private MemStatus Fault(ulong addr, Access access, MemStatus why, out ulong gpa, out ulong contiguous)
    {
        gpa = 0;
        contiguous = 0;
        _iommu.RecordFault(new IommuFault(Device, addr, access, why));
        return why;
    }
}
