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
