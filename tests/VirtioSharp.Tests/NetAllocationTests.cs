using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
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
        static long Window0(long[] a) => a[Warm + Window - 1] - a[Warm];
        static long Window1(long[] a) => a[^1] - a[Warm + Window];
        static string Jumps(long[] a) => string.Join(",", Enumerable.Range(Warm + 1, Frames - Warm - 1).Where(i => a[i] != a[i - 1]).Select(i => $"{i}:+{a[i] - a[i - 1]}"));
        Assert.True(Math.Min(Window0(port.TxAllocated), Window1(port.TxAllocated)) == 0, "transmit allocations at packets " + Jumps(port.TxAllocated));
        Assert.True(Math.Min(Window0(port.RxAllocated), Window1(port.RxAllocated)) == 0, "receive allocations at packets " + Jumps(port.RxAllocated));
        Assert.Empty(rig.ResetLines);
    }
}
