using System.Buffers.Binary;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Testing;

/// <summary>
/// A driver queue and the device queue facing it on a <see cref="DmaRig"/>, with raw access to the used ring and the
/// event suppression areas (to play a hostile peer). Raw writes throw <see cref="InvalidOperationException"/> if guest
/// memory refuses them.
/// </summary>
public sealed class QueuePair : IDisposable
{
    /// <summary>Builds both queues of <paramref name="size"/> entries on <paramref name="rig"/>.</summary>
    public QueuePair(DmaRig rig, ushort size = 8, QueueOptions? options = null)
    {
        Rig = rig;
        Options = options ?? new QueueOptions();
        Driver = rig.CreateDriver(size, Options);
        Device = rig.CreateDevice(Driver, Options);
        RingIovaPages = rig.IovaPagesInUse();
    }

    /// <summary>The machine the queues live on.</summary>
    public DmaRig Rig { get; }
    /// <summary>The options both queues were built with.</summary>
    public QueueOptions Options { get; }
    /// <summary>The driver side.</summary>
    public DriverQueue Driver { get; }
    /// <summary>The device side, through the device's view of memory.</summary>
    public DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> Device { get; }
    /// <summary>IOVA pages the rings (and indirect tables) hold: the floor leak checks return to.</summary>
    public int RingIovaPages { get; }

    private ulong RingGpa(ulong bus) => Driver.RingMemory.Gpa + (bus - Driver.RingMemory.Bus);

    private void RawWrite(ulong bus, ReadOnlySpan<byte> bytes, string what) =>
        Require.Ok(Rig.Platform.Ram.Write(RingGpa(bus), bytes), $"raw write of {what}");

    /// <summary>Split: a hostile device's direct write of used element <paramref name="slot"/>.</summary>
    public void WriteUsedElem(int slot, uint id, uint len)
    {
        var e = Options.Endian;
        var bytes = new byte[8];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 4), e.Fix(id));
        BitConverter.TryWriteBytes(bytes.AsSpan(4, 4), e.Fix(len));
        RawWrite(Driver.DeviceLayout.UsedRingAddr(slot % Driver.Size), bytes, $"used element {slot}");
    }

    /// <summary>Split: a hostile device's direct write of the used idx.</summary>
    public void WriteUsedIdx(ushort idx) =>
        RawWrite(Driver.DeviceLayout.UsedIdxAddr, BitConverter.GetBytes(Options.Endian.Fix(idx)), "used idx");

    /// <summary>Packed: a hostile device's used descriptor (len, id, flags) at <paramref name="slot"/> for lap <paramref name="wrap"/>.</summary>
    public void WritePackedUsed(int slot, ushort id, uint len, bool wrap = true)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(b, len);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(6), PackedRing.UsedBits(wrap));
        RawWrite(Driver.DeviceLayout.Desc + (ulong)slot * PackedDesc.Size + PackedDesc.LenOffset, b, $"packed used descriptor {slot}");
    }

    /// <summary>Packed: the device event suppression area as a hostile device writes it (§2.8.14).</summary>
    public void WriteDeviceEvent(ushort offWrap, ushort flags) => WriteEvent(Driver.DeviceLayout.DeviceArea, offWrap, flags);

    /// <summary>Packed: the driver event suppression area as a hostile driver writes it (§2.8.14).</summary>
    public void WriteDriverEvent(ushort offWrap, ushort flags) => WriteEvent(Driver.DeviceLayout.DriverArea, offWrap, flags);

    private void WriteEvent(ulong bus, ushort offWrap, ushort flags)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(b, offWrap);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), flags);
        RawWrite(bus, b, "event suppression area");
    }

    /// <summary>Adds a chain of fresh zeroed buffers with the given segment lengths; the token is the request.</summary>
    public QueueStatus Add(int[] readable, int[] writable, out Request request, out DmaStatus dma)
    {
        request = new Request(
            readable.Select(l => new BufferSegment(Rig.AllocBuffer(l, 0, new byte[l]), (uint)l)).ToArray(),
            writable.Select(l => new BufferSegment(Rig.AllocBuffer(l, 0, new byte[l]), (uint)l)).ToArray());
        return Driver.Add(request.Readable, request.Writable, request, out dma);
    }

    /// <summary>Like <see cref="Add"/>, but throws <see cref="InvalidOperationException"/> unless the add and its DMA succeed.</summary>
    public Request AddOk(int[] readable, int[] writable)
    {
        var st = Add(readable, writable, out var r, out var dma);
        Require.Equal(QueueStatus.Ok, st, "driver add");
        Require.Equal(DmaStatus.Ok, dma, "driver add DMA");
        return r;
    }

    /// <summary>Disposes the driver queue (its rings and mappings).</summary>
    public void Dispose() => Driver.Dispose();

    /// <summary>One chain the pair added: its readable and writable buffer segments.</summary>
    /// <param name="Readable">Device-readable segments, in order.</param>
    /// <param name="Writable">Device-writable segments, in order.</param>
    public sealed record Request(BufferSegment[] Readable, BufferSegment[] Writable)
    {
        /// <summary>Total length of the writable segments.</summary>
        public uint WritableBytes => (uint)Writable.Sum(s => (long)s.Length);
    }
}
