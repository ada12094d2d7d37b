using VirtioSharp.Memory;

namespace VirtioSharp.Dma;

/// <summary>
/// Direct ops: bus address = GPA + a fixed offset (device-tree dma-ranges), checked against RAM and the DMA mask.
/// What a device without ACCESS_PLATFORM gets: it sees guest-physical memory as is.
/// </summary>
public sealed class DirectDmaOps : IDmaOps
{
    private readonly IDmaPlatform _platform;
    private readonly ulong _offset;
    private readonly ulong _mask;

    /// <summary>Direct ops on <paramref name="platform"/>.</summary>
    /// <param name="platform">The machine the ops run on.</param>
    /// <param name="offset">Added to every GPA to form the bus address (dma-ranges).</param>
    /// <param name="dmaMask">Highest bus address the device can reach (e.g. 32-bit devices: 0xFFFF_FFFF).</param>
    public DirectDmaOps(IDmaPlatform platform, ulong offset = 0, ulong dmaMask = ulong.MaxValue)
    {
        _platform = platform;
        _offset = offset;
        _mask = dmaMask;
    }

    /// <inheritdoc/>
    public DmaOpsKind Kind => DmaOpsKind.Direct;
    /// <inheritdoc/>
    public string Name => _offset == 0 ? "direct" : $"direct(+0x{_offset:x})";
    /// <inheritdoc/>
    public ulong MaxMappingSize => uint.MaxValue;
    /// <inheritdoc/>
    public bool NeedsSync => false;
    /// <inheritdoc/>
    public DmaStats Stats { get; } = new();
    /// <summary>The fixed GPA→bus offset (dma-ranges).</summary>
    public ulong Offset => _offset;

    /// <inheritdoc/>
    public DmaStatus Map(ulong gpa, uint length, DmaDirection direction, out DmaMapping mapping)
    {
        if (length == 0) { mapping = default; Stats.MapErrors++; return DmaStatus.Empty; }
        ulong bus = gpa + _offset;
        ulong last = bus + length - 1;
        // dma_capable(): the whole buffer must be RAM and reachable under the mask.
        if (bus < gpa || last < bus || last > _mask || !_platform.Ram.IsBacked(gpa, length))
        {
            mapping = default;
            Stats.MapErrors++;
            return DmaStatus.BadAddress;
        }
        mapping = new DmaMapping(bus, gpa, length, direction, gpa, -1);
        Stats.Maps++;
        return DmaStatus.Ok;
    }

    /// <inheritdoc/>
    public void Unmap(in DmaMapping mapping) => Stats.Unmaps++;
    /// <inheritdoc/>
    public void SyncForDevice(in DmaMapping mapping) => Stats.SyncsForDevice++;
    /// <inheritdoc/>
    public void SyncForCpu(in DmaMapping mapping) => Stats.SyncsForCpu++;

    /// <inheritdoc/>
    public DmaStatus AllocCoherent(ulong size, out CoherentBuffer buffer)
    {
        if (!_platform.Allocator.TryAllocate(size, out ulong gpa)) { buffer = default; return DmaStatus.Exhausted; }
        _platform.Ram.Fill(gpa, size, 0);
        buffer = new CoherentBuffer(gpa, gpa + _offset, size);
        Stats.CoherentAllocs++;
        return DmaStatus.Ok;
    }

    /// <inheritdoc/>
    public void FreeCoherent(in CoherentBuffer buffer)
    {
        _platform.Allocator.Free(buffer.Gpa, buffer.Size);
        Stats.CoherentFrees++;
    }
}
