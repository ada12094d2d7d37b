namespace VirtioSharp.Dma;

/// <summary>
/// Bounce ops (swiotlb): the device only ever sees the shared pool. Map copies the buffer in (for every direction, so
/// bytes the device does not write come back unchanged), unmap and sync-for-CPU copy device-written data back out.
/// Coherent allocations are shared with the host (set_memory_decrypted).
/// </summary>
public sealed class BounceDmaOps(BouncePool pool) : IDmaOps
{
    private readonly BouncePool _pool = pool;
    private readonly IDmaPlatform _platform = pool.Platform;

    /// <inheritdoc/>
    public DmaOpsKind Kind => DmaOpsKind.Bounce;
    /// <inheritdoc/>
    public string Name => "bounce";
    /// <inheritdoc/>
    public ulong MaxMappingSize => _pool.MaxMappingSize;
    /// <inheritdoc/>
    public bool NeedsSync => true;
    /// <inheritdoc/>
    public DmaStats Stats { get; } = new();
    internal BouncePool Pool => _pool;

    /// <inheritdoc/>
    public DmaStatus Map(ulong gpa, uint length, DmaDirection direction, out DmaMapping mapping)
    {
        mapping = default;
        if (length == 0) { Stats.MapErrors++; return DmaStatus.Empty; }
        if (!_platform.Ram.IsBacked(gpa, length)) { Stats.MapErrors++; return DmaStatus.BadAddress; }
        var st = _pool.Allocate(gpa, length, out int slot);
        if (st != DmaStatus.Ok) { Stats.MapErrors++; return st; }
        ulong tlb = _pool.SlotAddress(slot);
        _platform.Cpu.Copy(tlb, gpa, length);
        Stats.BounceBytesIn += length;
        Stats.Maps++;
        mapping = new DmaMapping(tlb, gpa, length, direction, tlb, slot);
        return DmaStatus.Ok;
    }

    /// <inheritdoc/>
    public void Unmap(in DmaMapping mapping)
    {
        // Verify before copying out; Release verifies again under the pool lock, so to-device unmaps skip this one.
        if (mapping.DeviceWrites)
        {
            _pool.Verify(mapping);
            CopyOut(mapping);
        }
        _pool.Release(mapping);
        Stats.Unmaps++;
    }

    /// <inheritdoc/>
    public void SyncForDevice(in DmaMapping mapping)
    {
        _pool.Verify(mapping);
        if (mapping.DeviceReads)
        {
            _platform.Cpu.Copy(mapping.DeviceGpa, mapping.Gpa, mapping.Length);
            Stats.BounceBytesIn += mapping.Length;
        }
        Stats.SyncsForDevice++;
    }

    /// <inheritdoc/>
    public void SyncForCpu(in DmaMapping mapping)
    {
        _pool.Verify(mapping);
        if (mapping.DeviceWrites) CopyOut(mapping);
        Stats.SyncsForCpu++;
    }

    private void CopyOut(in DmaMapping mapping)
    {
        _platform.Cpu.Copy(mapping.Gpa, mapping.DeviceGpa, mapping.Length);
        Stats.BounceBytesOut += mapping.Length;
    }

    /// <inheritdoc/>
    public DmaStatus AllocCoherent(ulong size, out CoherentBuffer buffer)
    {
        buffer = default;
        if (!_platform.TryAllocateShared(size, out ulong gpa)) return DmaStatus.Exhausted;
        _platform.Ram.Fill(gpa, size, 0);
        buffer = new CoherentBuffer(gpa, gpa, size);
        Stats.CoherentAllocs++;
        return DmaStatus.Ok;
    }

    /// <inheritdoc/>
    public void FreeCoherent(in CoherentBuffer buffer)
    {
        _platform.FreeShared(buffer.Gpa, buffer.Size);
        Stats.CoherentFrees++;
    }
}
