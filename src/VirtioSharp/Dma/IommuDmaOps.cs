using VirtioSharp.Memory;

namespace VirtioSharp.Dma;

/// <summary>
/// IOMMU ops: each mapping gets fresh IOVA pages whose page-table entries grant only what the direction needs
/// (to-device: read, from-device: write). Unmap clears the entries and invalidates the IOTLB at once (strict) or in
/// batches (lazy, with the IOVA held back until the flush so it is never reused while a stale IOTLB entry may exist).
/// </summary>
public sealed class IommuDmaOps : IDmaOps
{
    private const ulong PageSize = 4096;
    private const int LazyBatch = 64;
    private readonly IDmaPlatform _platform;
    private readonly IIommuDomain _domain;
    private readonly IovaAllocator _iova;
    private SpinGate _lock;   // mutable struct: never readonly, never copied
    private readonly (ulong Iova, int Pages)[] _flushQueue = new (ulong, int)[LazyBatch];
    private int _flushCount;

    /// <summary>IOMMU ops mapping into <paramref name="domain"/>, invalidating as <paramref name="mode"/> says.</summary>
    public IommuDmaOps(IDmaPlatform platform, IIommuDomain domain, InvalidationMode mode = InvalidationMode.Strict)
    {
        _platform = platform;
        _domain = domain;
        Mode = mode;
        _iova = new IovaAllocator(domain.ApertureBase, domain.ApertureSize);
    }

    /// <summary>How unmaps invalidate the IOTLB.</summary>
    public InvalidationMode Mode { get; }
    /// <summary>Fault injection for tests and scenarios: unmap without invalidating the IOTLB (a driver bug).</summary>
    public bool SkipInvalidation { get; set; }
    /// <inheritdoc/>
    public DmaOpsKind Kind => DmaOpsKind.Iommu;
    /// <inheritdoc/>
    public string Name => Mode == InvalidationMode.Strict ? "iommu(strict)" : "iommu(lazy)";
    /// <inheritdoc/>
    public ulong MaxMappingSize => 1UL << 30;
    /// <inheritdoc/>
    public bool NeedsSync => false;
    /// <inheritdoc/>
    public DmaStats Stats { get; } = new();
    internal int IovaPagesInUse { get { _lock.Enter(); try { return _iova.UsedPages; } finally { _lock.Exit(); } } }
    /// <summary>Unmapped IOVA ranges queued for the next lazy flush (always 0 when strict).</summary>
    public int PendingInvalidations { get { _lock.Enter(); try { return _flushCount; } finally { _lock.Exit(); } } }

    private static Access Permissions(DmaDirection d) => d switch
    {
        DmaDirection.ToDevice => Access.Read,
        DmaDirection.FromDevice => Access.Write,
        _ => Access.ReadWrite,
    };

    /// <inheritdoc/>
    public DmaStatus Map(ulong gpa, uint length, DmaDirection direction, out DmaMapping mapping)
    {
        mapping = default;
        if (length == 0) { Stats.MapErrors++; return DmaStatus.Empty; }
        if (length > MaxMappingSize) { Stats.MapErrors++; return DmaStatus.TooLarge; }
        if (!_platform.Ram.IsBacked(gpa, length)) { Stats.MapErrors++; return DmaStatus.BadAddress; }
        ulong first = gpa & ~(PageSize - 1);
        int pages = (int)((gpa + length - first + PageSize - 1) / PageSize);
        var perms = Permissions(direction);
        ulong iova;
        _lock.Enter();
        try
        {
            if (!_iova.TryAllocate(pages, out iova))
            {
                // Lazy mode may be holding IOVAs back; flushing releases them.
                if (_flushCount == 0 || !FlushLocked() || !_iova.TryAllocate(pages, out iova))
                {
                    Stats.MapErrors++;
                    return DmaStatus.Exhausted;
                }
            }
            Stats.Maps++;
        }
        finally { _lock.Exit(); }
        for (int i = 0; i < pages; i++)
            _domain.MapPage(iova + (ulong)i * PageSize, first + (ulong)i * PageSize, perms);
        mapping = new DmaMapping(iova + (gpa - first), gpa, length, direction, gpa, -1);
        return DmaStatus.Ok;
    }

    /// <summary>The most recent unmap (to show what a stale IOTLB entry still reaches).</summary>
    public DmaMapping LastUnmapped { get; private set; }

    /// <inheritdoc/>
    public void Unmap(in DmaMapping mapping)
    {
        LastUnmapped = mapping;
        ulong iova = mapping.Bus & ~(PageSize - 1);
        int pages = (int)((mapping.Bus + mapping.Length - iova + PageSize - 1) / PageSize);
        for (int i = 0; i < pages; i++) _domain.UnmapPage(iova + (ulong)i * PageSize);
        _lock.Enter();
        try
        {
            Stats.Unmaps++;
            if (SkipInvalidation)
            {
                // The bug being modelled: the page is gone from the table but not from the IOTLB.
                _iova.Free(iova, pages);
                return;
            }
            if (Mode == InvalidationMode.Strict)
            {
                _domain.InvalidateRange(iova, (ulong)pages * PageSize);
                Stats.Invalidations++;
                _iova.Free(iova, pages);
                return;
            }
            _flushQueue[_flushCount++] = (iova, pages);
            if (_flushCount == LazyBatch) FlushLocked();
        }
        finally { _lock.Exit(); }
    }

    /// <summary>Lazy mode: invalidate everything queued and release those IOVAs now.</summary>
    public void Flush()
    {
        _lock.Enter();
        try { FlushLocked(); }
        finally { _lock.Exit(); }
    }

    private bool FlushLocked()
    {
        if (_flushCount == 0) return false;
        _domain.InvalidateAll();
        Stats.Invalidations++;
        for (int i = 0; i < _flushCount; i++) _iova.Free(_flushQueue[i].Iova, _flushQueue[i].Pages);
        _flushCount = 0;
        return true;
    }

    /// <inheritdoc/>
    public void SyncForDevice(in DmaMapping mapping) => Stats.SyncsForDevice++;
    /// <inheritdoc/>
    public void SyncForCpu(in DmaMapping mapping) => Stats.SyncsForCpu++;

    /// <inheritdoc/>
    public DmaStatus AllocCoherent(ulong size, out CoherentBuffer buffer)
    {
        buffer = default;
        if (!_platform.Allocator.TryAllocate(size, out ulong gpa)) return DmaStatus.Exhausted;
        _platform.Ram.Fill(gpa, size, 0);
        int pages = (int)((size + PageSize - 1) / PageSize);
        ulong iova;
        _lock.Enter();
        try
        {
            if (!_iova.TryAllocate(pages, out iova))
            {
                _platform.Allocator.Free(gpa, size);
                return DmaStatus.Exhausted;
            }
        }
        finally { _lock.Exit(); }
        for (int i = 0; i < pages; i++)
            _domain.MapPage(iova + (ulong)i * PageSize, gpa + (ulong)i * PageSize, Access.ReadWrite);
        buffer = new CoherentBuffer(gpa, iova, size);
        Stats.CoherentAllocs++;
        return DmaStatus.Ok;
    }

    /// <inheritdoc/>
    public void FreeCoherent(in CoherentBuffer buffer)
    {
        int pages = (int)((buffer.Size + PageSize - 1) / PageSize);
        for (int i = 0; i < pages; i++) _domain.UnmapPage(buffer.Bus + (ulong)i * PageSize);
        _domain.InvalidateRange(buffer.Bus, (ulong)pages * PageSize);
        _lock.Enter();
        try { _iova.Free(buffer.Bus, pages); }
        finally { _lock.Exit(); }
        _platform.Allocator.Free(buffer.Gpa, buffer.Size);
        Stats.CoherentFrees++;
    }
}
