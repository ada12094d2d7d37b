using System.Buffers.Binary;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests.Support;

/// <summary>A driver queue and the device queue facing it on a <see cref="DmaRig"/>, with raw access to the used ring.</summary>
public sealed class QueuePair : IDisposable
{
    public QueuePair(DmaRig rig, ushort size = 8, QueueOptions? options = null)
    {
        Rig = rig;
        Options = options ?? new QueueOptions();
        Driver = rig.CreateDriver(size, Options);
        Device = rig.CreateDevice(Driver, Options);
        RingIovaPages = rig.IovaPagesInUse();
    }

    public DmaRig Rig { get; }
    public QueueOptions Options { get; }
    public DriverQueue Driver { get; }
    public DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> Device { get; }
    /// <summary>IOVA pages the rings (and indirect tables) hold: the floor leak checks return to.</summary>
    public int RingIovaPages { get; }

    private ulong RingGpa(ulong bus) => Driver.RingMemory.Gpa + (bus - Driver.RingMemory.Bus);

    /// <summary>A hostile device's direct write of used element <paramref name="slot"/>.</summary>
    public void WriteUsedElem(int slot, uint id, uint len)
    {
        var e = Options.Endian;
        var bytes = new byte[8];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 4), e.Fix(id));
        BitConverter.TryWriteBytes(bytes.AsSpan(4, 4), e.Fix(len));
        Assert.Equal(MemStatus.Ok, Rig.Platform.Ram.Write(RingGpa(Driver.DeviceLayout.UsedRingAddr(slot % Driver.Size)), bytes));
    }

    public void WriteUsedIdx(ushort idx) =>
        Assert.Equal(MemStatus.Ok, Rig.Platform.Ram.Write(RingGpa(Driver.DeviceLayout.UsedIdxAddr), BitConverter.GetBytes(Options.Endian.Fix(idx))));

    /// <summary>Packed: a hostile device's used descriptor (len, id, flags) at <paramref name="slot"/> for lap <paramref name="wrap"/>.</summary>
    public void WritePackedUsed(int slot, ushort id, uint len, bool wrap = true)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(b, len);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(4), id);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(6), PackedRing.UsedBits(wrap));
        Assert.Equal(MemStatus.Ok, Rig.Platform.Ram.Write(RingGpa(Driver.DeviceLayout.Desc + (ulong)slot * PackedDesc.Size + PackedDesc.LenOffset), b));
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
        Assert.Equal(MemStatus.Ok, Rig.Platform.Ram.Write(RingGpa(bus), b));
    }

    /// <summary>Adds a chain of fresh buffers with the given segment lengths; the token is the request.</summary>
    public QueueStatus Add(int[] readable, int[] writable, out Request request, out DmaStatus dma)
    {
        request = new Request(
            readable.Select(l => new BufferSegment(Rig.AllocBuffer(l, 0, new byte[l]), (uint)l)).ToArray(),
            writable.Select(l => new BufferSegment(Rig.AllocBuffer(l, 0, new byte[l]), (uint)l)).ToArray());
        return Driver.Add(request.Readable, request.Writable, request, out dma);
    }

    public Request AddOk(int[] readable, int[] writable)
    {
        Assert.Equal(QueueStatus.Ok, Add(readable, writable, out var r, out var dma));
        Assert.Equal(DmaStatus.Ok, dma);
        return r;
    }

    public void Dispose() => Driver.Dispose();

    public sealed record Request(BufferSegment[] Readable, BufferSegment[] Writable)
    {
        public uint WritableBytes => (uint)Writable.Sum(s => (long)s.Length);
    }
}
