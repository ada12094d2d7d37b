using System.Buffers.Binary;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A device queue facing a driver the test plays by hand: descriptors, avail entries and indexes are written straight into
/// guest memory, and every access the device makes is logged. Ring areas and a data area are reachable (shared on a
/// protected platform, mapped read-write at IOVA = aperture base + GPA behind an IOMMU); anything else is not.
/// </summary>
public sealed class HostileDriverRig : IDisposable
{
    public const ulong DataBytes = 64 * 1024;
    private ushort _availIdx;

    public HostileDriverRig(ushort size = 8, QueueOptions? options = null, SimPlatformOptions? platform = null, bool iommu = false)
    {
        Platform = new SimPlatform(platform ?? new SimPlatformOptions { RamSize = 4UL << 20, BouncePoolSize = 0, HasIommu = iommu });
        Device = Platform.Attach("hostile-driver-dev", behindIommu: iommu);
        Size = size;
        Options = options ?? new QueueOptions();
        DescGpa = Platform.Allocator.Allocate(SplitRingLayout.DescBytes(size));
        AvailGpa = Platform.Allocator.Allocate(SplitRingLayout.AvailBytes(size));
        UsedGpa = Platform.Allocator.Allocate(SplitRingLayout.UsedBytes(size));
        DataGpa = Platform.Allocator.Allocate(DataBytes);
        if (Device.Domain is { } d) BusOffset = d.ApertureBase;
        foreach (var (gpa, len) in Reachable)
        {
            Platform.SetShared(gpa, len, true);
            if (Device.Domain is { } dom)
                for (ulong p = 0; p < len; p += 4096) dom.MapPage(Bus(gpa + p), gpa + p, Access.ReadWrite);
        }
        Layout = new SplitRingLayout(size, Bus(DescGpa), Bus(AvailGpa), Bus(UsedGpa), Options.EventIdx, Options.Endian);
        Queue = new(new LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>(Device.Memory, Log), Layout, Options);
    }

    public SimPlatform Platform { get; }
    public SimDevice Device { get; }
    public ushort Size { get; }
    public QueueOptions Options { get; }
    public ulong DescGpa { get; }
    public ulong AvailGpa { get; }
    public ulong UsedGpa { get; }
    public ulong DataGpa { get; }
    /// <summary>Bus address minus GPA for everything the rig maps (0 without an IOMMU).</summary>
    public ulong BusOffset { get; }
    public SplitRingLayout Layout { get; }
    public AccessLog Log { get; } = new();
    public DeviceQueue<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>> Queue { get; }

    private (ulong Gpa, ulong Len)[] Reachable =>
    [
        (DescGpa, SplitRingLayout.DescBytes(Size)), (AvailGpa, SplitRingLayout.AvailBytes(Size)),
        (UsedGpa, SplitRingLayout.UsedBytes(Size)), (DataGpa, DataBytes),
    ];

    /// <summary>The bus ranges the device may legitimately touch.</summary>
    public (ulong Start, ulong End)[] AllowedBusRanges => Reachable.Select(r => (Bus(r.Gpa), Bus(r.Gpa) + r.Len)).ToArray();

    public ulong Bus(ulong gpa) => gpa + BusOffset;
    /// <summary>Bus address of a byte in the data area.</summary>
    public ulong Data(ulong offset = 0) => Bus(DataGpa + offset);

    private void WriteRaw(ulong gpa, VirtqDesc d)
    {
        d = d.WithEndian(Options.Endian);
        Span<byte> b = stackalloc byte[VirtqDesc.Size];
        BinaryPrimitives.WriteUInt64LittleEndian(b, d.Addr);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], d.Len);
        BinaryPrimitives.WriteUInt16LittleEndian(b[12..], d.Flags);
        BinaryPrimitives.WriteUInt16LittleEndian(b[14..], d.Next);
        Assert.Equal(MemStatus.Ok, Platform.Ram.Write(gpa, b));
    }

    /// <summary>Writes descriptor <paramref name="index"/> of the ring's table.</summary>
    internal void Desc(int index, ulong addr, uint len, DescFlags flags = DescFlags.None, ushort next = 0) =>
        WriteRaw(DescGpa + (ulong)index * VirtqDesc.Size, new VirtqDesc(addr, len, flags, next));

    /// <summary>Writes entry <paramref name="index"/> of an indirect table placed at data-area offset <paramref name="tableOffset"/>.</summary>
    internal void TableDesc(ulong tableOffset, int index, ulong addr, uint len, DescFlags flags = DescFlags.None, ushort next = 0) =>
        WriteRaw(DataGpa + tableOffset + (ulong)index * VirtqDesc.Size, new VirtqDesc(addr, len, flags, next));

    private void WriteU16(ulong gpa, ushort v)
    {
        Span<byte> b = stackalloc byte[2];
        if (Options.Endian.BigEndian) BinaryPrimitives.WriteUInt16BigEndian(b, v);
        else BinaryPrimitives.WriteUInt16LittleEndian(b, v);
        Assert.Equal(MemStatus.Ok, Platform.Ram.Write(gpa, b));
    }

    /// <summary>Puts heads into the next avail slots and publishes them with the avail idx.</summary>
    public void Publish(params ushort[] heads)
    {
        foreach (var h in heads)
        {
            WriteU16(AvailGpa + 4 + 2UL * (ulong)(_availIdx % Size), h);
            _availIdx++;
        }
        SetAvailIdx(_availIdx);
    }

    /// <summary>Writes any avail idx, however far ahead.</summary>
    public void SetAvailIdx(ushort idx)
    {
        _availIdx = idx;
        WriteU16(AvailGpa + 2, idx);
    }

    public QueueStatus Pop(out DescriptorChain? chain) => Queue.Pop(out chain);

    /// <summary>
    /// Pops and asserts the queue broke with <paramref name="expected"/>, stays broken, wrote nothing, and touched only the
    /// ring and the data area.
    /// </summary>
    public void AssertPopBreaks(QueueError expected)
    {
        int inFlight = Queue.InFlight;
        var st = Pop(out var chain);
        Assert.Equal(QueueStatus.Broken, st);
        Assert.Null(chain);
        Assert.Equal(expected, Queue.Error);
        Assert.True(Queue.IsBroken);
        Assert.False(string.IsNullOrEmpty(Queue.ErrorDetail));
        Assert.Equal(inFlight, Queue.InFlight);
        Assert.Empty(Log.Writes);
        Log.AssertTouchedOnlyWithin(AllowedBusRanges);
        // Sticky: asking again neither recovers nor touches memory.
        int before = Log.Entries.Count;
        Assert.Equal(QueueStatus.Broken, Pop(out _));
        Assert.False(Queue.HasAvailable());
        Assert.Equal(before, Log.Entries.Count);
        Assert.Equal(expected, Queue.Error);
    }

    public void Dispose() => Platform.Dispose();
}
