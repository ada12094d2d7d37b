using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Net.Switch;
using VirtioSharp.Spec.Net;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// The packet hot path allocates nothing: a port that reads the ring worker's own allocation counter each time the
/// device hands it a frame (transmit) or asks for one (receive) sees no bytes allocated on that thread between
/// packets once the device is warm, over the real vhost-user back-end.
/// </summary>
public class NetAllocationTests
{
    /// <summary>Records GC.GetAllocatedBytesForCurrentThread at every call; frames to receive come from one preallocated buffer.</summary>
    private sealed class MeteringPort(int frames, int frameLength) : INetPort
    {
        private readonly byte[] _frame = new byte[frameLength];
        private int _toDeliver = frames;
        private volatile Action? _wake;
        public readonly long[] TxAllocated = new long[frames], RxAllocated = new long[frames];
        public int Transmitted, Delivered;

        public ulong OffloadFeatures => MemoryNetPort.AllOffloads;
        public System.Runtime.InteropServices.SafeHandle? ReadableHandle => null;
        public void SetReceiveWakeup(Action? wake) => _wake = wake;
        public void SetOffloads(ulong features) { }
        public void Start() { _frame[0] = 0x52; _wake?.Invoke(); }

        public bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame)
        {
            if (Transmitted < TxAllocated.Length) TxAllocated[Transmitted] = GC.GetAllocatedBytesForCurrentThread();
            Transmitted++;
            return true;
        }

        public unsafe int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header)
        {
            header = default;
            if (Volatile.Read(ref _toDeliver) == 0) return 0;
            RxAllocated[Delivered] = GC.GetAllocatedBytesForCurrentThread();
            _frame.AsSpan(0, (int)Math.Min((ulong)_frame.Length, destination[0].Length)).CopyTo(new Span<byte>((void*)destination[0].Base, (int)destination[0].Length));
            Delivered++;
            _toDeliver--;
            return _frame.Length;
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NoBytesAllocatedPerPacketInSteadyState(bool packed)
    {
        const int Frames = 900, Warm = 300, Window = 300;
        var port = new MeteringPort(Frames, 60);
        var dev = new NetDevice<RMem>([port], new NetDeviceOptions { ControlQueue = false, OfferPacked = packed });
        using var rig = new VhostDeviceRig(dev);
        using (var fe = rig.Connect())
        using (var drv = NetDriver.Probe(fe, fe.Environment(pollBudget: 2000), maxQueueSize: 256))
        {
            var frame = new byte[60];
            for (int i = 0; i < Frames; i++)
            {
                while (!drv.Send(frame)) Assert.True(drv.WaitForTransmits());
                if (i % 64 == 63) Assert.True(drv.WaitForTransmits());
            }
            Assert.True(drv.WaitForTransmits());
            port.Start();
            for (int i = 0; i < Frames; i++) drv.Receive();
        }
        Assert.Equal(Frames, port.Transmitted);
        Assert.Equal(Frames, port.Delivered);
        // The same worker thread served each queue throughout (one connection, no restart): the counter is comparable.
        // Two windows of 300 packets after a warm-up: an allocation per packet shows in both; a one-off event of the
        // runtime on that thread (seen once in CI: 6.5 KB in one window) can spoil only one, so one must be clean.
        AssertOneWindowClean(port.TxAllocated, Warm, Window, "transmit");
        AssertOneWindowClean(port.RxAllocated, Warm, Window, "receive");
        Assert.Empty(rig.ResetLines);
    }

    /// <summary>A switch port that records the calling thread's allocation counter at every frame it forwards or delivers.</summary>
    private sealed class MeteredSwitchPort(NetSwitchPort inner, int frames) : INetPort
    {
        public readonly long[] TxAllocated = new long[frames], RxAllocated = new long[frames];
        public int Transmitted, Delivered;

        public ulong OffloadFeatures => inner.OffloadFeatures;
        public System.Runtime.InteropServices.SafeHandle? ReadableHandle => null;
        public void SetReceiveWakeup(Action? wake) => inner.SetReceiveWakeup(wake);
        public void SetOffloads(ulong features) => inner.SetOffloads(features);

        public bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame)
        {
            if (Transmitted < TxAllocated.Length) TxAllocated[Transmitted] = GC.GetAllocatedBytesForCurrentThread();
            Transmitted++;
            return inner.Transmit(header, frame);
        }

        public int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header)
        {
            int n = inner.Receive(destination, out header);
            if (n > 0 && Delivered < RxAllocated.Length) RxAllocated[Delivered++] = GC.GetAllocatedBytesForCurrentThread();
            return n;
        }
    }

    // Through the built-in switch: guest A's transmit worker copies each frame into a pooled buffer and queues it for
    // B, B's receive worker copies it into B's buffers; neither allocates per frame once warm.
    [Fact]
    public void NoBytesAllocatedPerFrameThroughTheSwitch()
    {
        const int Frames = 900, Warm = 300, Window = 300, Batch = 32;
        var sw = new NetSwitch(2);
        var pa = new MeteredSwitchPort(sw.Ports[0], Frames);
        var pb = new MeteredSwitchPort(sw.Ports[1], Frames);
        byte[] macA = [0x52, 0x54, 0, 0, 0, 0x0a], macB = [0x52, 0x54, 0, 0, 0, 0x0b];
        using var rigA = new VhostDeviceRig(new NetDevice<RMem>([pa], new NetDeviceOptions { ControlQueue = false, Mac = macA }));
        using var rigB = new VhostDeviceRig(new NetDevice<RMem>([pb], new NetDeviceOptions { ControlQueue = false, Mac = macB }));
        using (var feA = rigA.Connect())
        using (var drvA = NetDriver.Probe(feA, feA.Environment(pollBudget: 2000), maxQueueSize: 256))
        using (var feB = rigB.Connect())
        using (var drvB = NetDriver.Probe(feB, feB.Environment(pollBudget: 2000), maxQueueSize: 256))
        {
            var frame = new byte[60];
            macB.CopyTo(frame, 0);
            macA.CopyTo(frame, 6);
            for (int i = 0; i < Frames; i += Batch)
            {
                int n = Math.Min(Batch, Frames - i);
                for (int j = 0; j < n; j++)
                {
                    frame[20] = (byte)(i + j);
                    while (!drvA.Send(frame)) Assert.True(drvA.WaitForTransmits());
                }
                Assert.True(drvA.WaitForTransmits());
                for (int j = 0; j < n; j++) Assert.Equal((byte)(i + j), drvB.Receive().Frame[20]);
            }
        }
        Assert.Equal(Frames, pa.Transmitted);
        Assert.Equal(Frames, pb.Delivered);
        Assert.Equal(0, sw.Ports[1].Stats.RxDropped);
        AssertOneWindowClean(pa.TxAllocated, Warm, Window, "transmit");
        AssertOneWindowClean(pb.RxAllocated, Warm, Window, "receive");
        Assert.Empty(rigA.ResetLines);
        Assert.Empty(rigB.ResetLines);
    }

    /// <summary>
    /// <paramref name="counter"/>: the thread's allocation counter at each packet. Two windows after the warm-up: an
    /// allocation per packet shows in both; a one-off event of the runtime can spoil only one, so one must be clean.
    /// </summary>
    private static void AssertOneWindowClean(long[] counter, int warm, int window, string what)
    {
        long first = counter[warm + window - 1] - counter[warm], second = counter[^1] - counter[warm + window];
        string jumps = string.Join(",", Enumerable.Range(warm + 1, counter.Length - warm - 1)
            .Where(i => counter[i] != counter[i - 1]).Select(i => $"{i}:+{counter[i] - counter[i - 1]}"));
        Assert.True(Math.Min(first, second) == 0, $"{what} allocations at packets {jumps}");
    }
}
