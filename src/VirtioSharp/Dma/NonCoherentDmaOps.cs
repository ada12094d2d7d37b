namespace VirtioSharp.Dma;

/// <summary>
/// Cache maintenance around another ops, for devices that do not snoop CPU caches (arm64 arch_sync_dma_*): clean the
/// device-visible range before the device looks, invalidate it before the CPU looks at what the device wrote, and give
/// coherent allocations an uncached CPU mapping. Plumbed onto a device that is really coherent, the invalidate throws away
/// data the device left in the cache — the corruption the 2018 thread warned about.
/// </summary>
internal sealed class NonCoherentDmaOps(IDmaOps inner, IDmaPlatform platform) : IDmaOps
{
    public IDmaOps Inner { get; } = inner;
    public DmaOpsKind Kind => Inner.Kind;
    public string Name => Inner.Name + "+noncoherent";
    public ulong MaxMappingSize => Inner.MaxMappingSize;
    public bool NeedsSync => true;
    public DmaStats Stats => Inner.Stats;

    public DmaStatus Map(ulong gpa, uint length, DmaDirection direction, out DmaMapping mapping)
    {
        var st = Inner.Map(gpa, length, direction, out mapping);
        if (st != DmaStatus.Ok) return st;
        // Clean for every direction: dirty lines written back later would overwrite what the device stores.
        platform.CacheClean(mapping.DeviceGpa, mapping.Length);
        Stats.CacheCleans++;
        return st;
    }

    public void Unmap(in DmaMapping mapping)
    {
        if (mapping.DeviceWrites) Invalidate(mapping);
        Inner.Unmap(mapping);
    }

    public void SyncForDevice(in DmaMapping mapping)
    {
        Inner.SyncForDevice(mapping);
        platform.CacheClean(mapping.DeviceGpa, mapping.Length);
        Stats.CacheCleans++;
    }

    public void SyncForCpu(in DmaMapping mapping)
    {
        if (mapping.DeviceWrites) Invalidate(mapping);
        Inner.SyncForCpu(mapping);
    }

    private void Invalidate(in DmaMapping mapping)
    {
        platform.CacheInvalidate(mapping.DeviceGpa, mapping.Length);
        Stats.CacheInvalidates++;
    }

    public DmaStatus AllocCoherent(ulong size, out CoherentBuffer buffer)
    {
        var st = Inner.AllocCoherent(size, out buffer);
        if (st == DmaStatus.Ok)
        {
            platform.CacheInvalidate(buffer.Gpa, buffer.Size);
            platform.SetUncached(buffer.Gpa, buffer.Size, true);
        }
        return st;
    }

    public void FreeCoherent(in CoherentBuffer buffer)
    {
        platform.SetUncached(buffer.Gpa, buffer.Size, false);
        Inner.FreeCoherent(buffer);
    }
}
