using System.Buffers.Binary;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Testing;

/// <summary>
/// A device queue facing a driver the test plays by hand: descriptors, avail entries and indexes are written straight into
/// guest memory, and every access the device makes is logged. Ring areas and a data area are reachable (shared on a
/// protected platform, mapped read-write at IOVA = aperture base + GPA behind an IOMMU); anything else is not. Raw
/// writes and <see cref="AssertPopBreaks"/> throw <see cref="InvalidOperationException"/> when something is wrong.
/// </summary>
public sealed class HostileDriverRig : IDisposable
{
    /// <summary>Size of the data area the rig maps for buffers and indirect tables.</summary>
    public const ulong DataBytes = 64 * 1024;
    private ushort _availIdx;

    /// <summary>
    /// A split ring of <paramref name="size"/> entries on a fresh platform (<paramref name="platform"/>, or 4 MiB of RAM,
    /// no bounce pool), its device behind an IOMMU when <paramref name="iommu"/>.
    /// </summary>
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

    /// <summary>The simulated platform.</summary>
    public SimPlatform Platform { get; }
    /// <summary>The attached device whose view the queue uses.</summary>
    public SimDevice Device { get; }
    /// <summary>Entries in the ring.</summary>
    public ushort Size { get; }
    /// <summary>The options the device queue was built with.</summary>
    public QueueOptions Options { get; }
    /// <summary>GPA of the descriptor table.</summary>
    public ulong DescGpa { get; }
    /// <summary>GPA of the avail ring.</summary>
    public ulong AvailGpa { get; }
    /// <summary>GPA of the used ring.</summary>
    public ulong UsedGpa { get; }
    /// <summary>GPA of the data area.</summary>
    public ulong DataGpa { get; }
    /// <summary>Bus address minus GPA for everything the rig maps (0 without an IOMMU).</summary>
    public ulong BusOffset { get; }
    /// <summary>The ring layout in bus addresses, as the device queue sees it.</summary>
    public SplitRingLayout Layout { get; }
    /// <summary>Every access the device queue made.</summary>
    public AccessLog Log { get; } = new();
    /// <summary>The device queue under test, its memory logged into <see cref="Log"/>.</summary>
    public DeviceQueue<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>> Queue { get; }

    private (ulong Gpa, ulong Len)[] Reachable =>
    [
        (DescGpa, SplitRingLayout.DescBytes(Size)), (AvailGpa, SplitRingLayout.AvailBytes(Size)),
        (UsedGpa, SplitRingLayout.UsedBytes(Size)), (DataGpa, DataBytes),
    ];

    /// <summary>The bus ranges the device may legitimately touch.</summary>
    public (ulong Start, ulong End)[] AllowedBusRanges => Reachable.Select(r => (Bus(r.Gpa), Bus(r.Gpa) + r.Len)).ToArray();

    /// <summary>The bus address the device uses for <paramref name="gpa"/>.</summary>
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
        Require.Ok(Platform.Ram.Write(gpa, b), $"raw write at GPA 0x{gpa:x}");
    }

    /// <summary>Writes descriptor <paramref name="index"/> of the ring's table.</summary>
    public void Desc(int index, ulong addr, uint len, DescFlags flags = DescFlags.None, ushort next = 0) =>
        WriteRaw(DescGpa + (ulong)index * VirtqDesc.Size, new VirtqDesc(addr, len, flags, next));

    /// <summary>Writes entry <paramref name="index"/> of an indirect table placed at data-area offset <paramref name="tableOffset"/>.</summary>
    public void TableDesc(ulong tableOffset, int index, ulong addr, uint len, DescFlags flags = DescFlags.None, ushort next = 0) =>
        WriteRaw(DataGpa + tableOffset + (ulong)index * VirtqDesc.Size, new VirtqDesc(addr, len, flags, next));

    private void WriteU16(ulong gpa, ushort v)
    {
        Span<byte> b = stackalloc byte[2];
        if (Options.Endian.BigEndian) BinaryPrimitives.WriteUInt16BigEndian(b, v);
        else BinaryPrimitives.WriteUInt16LittleEndian(b, v);
        Require.Ok(Platform.Ram.Write(gpa, b), $"raw write at GPA 0x{gpa:x}");
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

    /// <summary>Pops the next chain from the device queue.</summary>
    public QueueStatus Pop(out DescriptorChain? chain) => Queue.Pop(out chain);

    /// <summary>
    /// Pops and checks the queue broke with <paramref name="expected"/>, stays broken, wrote nothing, and touched only the
    /// ring and the data area; throws <see cref="InvalidOperationException"/> saying which check failed.
    /// </summary>
    public void AssertPopBreaks(QueueError expected)
    {
        int inFlight = Queue.InFlight;
        var st = Pop(out var chain);
        Require.Equal(QueueStatus.Broken, st, "pop status");
        Require.That(chain is null, "a broken pop returned a chain");
        Require.Equal(expected, Queue.Error, "queue error");
        Require.That(Queue.IsBroken, "the queue is not marked broken");
        Require.That(!string.IsNullOrEmpty(Queue.ErrorDetail), "the queue gave no error detail");
        Require.Equal(inFlight, Queue.InFlight, "chains in flight");
        Require.That(!Log.Writes.Any(), $"the device wrote guest memory: {string.Join(", ", Log.Writes.Select(w => $"0x{w.Addr:x}+{w.Length}"))}");
        Log.AssertTouchedOnlyWithin(AllowedBusRanges);
        // Sticky: asking again neither recovers nor touches memory.
        int before = Log.Entries.Count;
        Require.Equal(QueueStatus.Broken, Pop(out _), "pop status after breaking");
        Require.That(!Queue.HasAvailable(), "a broken queue reports available buffers");
        Require.Equal(before, Log.Entries.Count, "accesses by pops after breaking");
        Require.Equal(expected, Queue.Error, "queue error after breaking");
    }

    /// <summary>Disposes the platform.</summary>
    public void Dispose() => Platform.Dispose();
}
