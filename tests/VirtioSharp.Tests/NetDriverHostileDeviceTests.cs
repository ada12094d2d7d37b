using VirtioSharp.Devices;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>
/// The driver against a lying device: num_buffers naming buffers the device never used, num_buffers 0, a used length
/// shorter than the header. Each frame is dropped and counted, the buffers go back to the ring, nothing leaks, and a
/// truthful frame afterwards arrives intact.
/// </summary>
public class NetDriverHostileDeviceTests
{
    /// <summary>A network device that answers each receive buffer with whatever header and length it is told to.</summary>
    private sealed class LyingDevice : IVirtioDevice<Mem>
    {
        private readonly QueueService<Mem> _rx = new(64);
        private DeviceContext<Mem>? _ctx;
        public readonly Queue<(ushort NumBuffers, uint Used, byte[] Frame)> Script = new();

        public DeviceId DeviceId => DeviceId.Network;
        public ulong DeviceFeatures => VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(NetFeature.MrgRxbuf);
        public int QueueCount => 2;
        public ushort MaxQueueSize => 64;
        public int ConfigSize => NetConfig.Size;
        public void ReadConfig(int offset, Span<byte> destination) => destination.Clear();
        public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }
        public bool AcceptFeatures(ulong features, out string? reason) { reason = null; return true; }
        public void Activate(DeviceContext<Mem> context) => _ctx = context;
        public void Reset() => _ctx = null;
        public void Play() => _ctx?.Wake(0);

        public void QueueNotify(int queue)
        {
            if (queue != 0 || _ctx is not { } ctx) return;
            var h = new Rx(this);
            _rx.Run(ctx, 0, ref h);
        }

        private readonly struct Rx(LyingDevice d) : IChainHandler<Mem>
        {
            public bool Ready => d.Script.Count > 0;
            public uint Handle(DeviceQueue<Mem> q, DescriptorChain chain)
            {
                var (nb, used, frame) = d.Script.Dequeue();
                var b = new byte[12 + frame.Length];
                new VirtioNetHdr(0, 0, 0, 0, 0, 0, nb).Write(b.AsSpan(0, 12));
                frame.CopyTo(b, 12);
                var w = new ChainWriter<Mem>(q.Memory, chain);
                w.Write(b, out _);
                return Math.Min(used, (uint)chain.WritableBytes);
            }
        }
    }

    [Fact]
    public void LyingNumBuffersAndShortLengthsAreDroppedAndCounted()
    {
        using var rig = new SimRig(DmaMode.Direct);
        var dev = new LyingDevice();
        rig.Add(dev, SimTransport.Pci);
        var good = Enumerable.Range(0, 100).Select(i => (byte)i).ToArray();
        using (var drv = NetDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            // One at a time, so each lie is all the device has used when the driver looks.
            int errors = 0;
            foreach (var lie in new (ushort, uint)[] { (3, 112), (0, 112), (1, 8) })
            {
                dev.Script.Enqueue((lie.Item1, lie.Item2, good));
                dev.Play();
                Assert.False(drv.TryReceive(out _));
                Assert.Equal(++errors, drv.RxErrors);
            }
            dev.Script.Enqueue((1, 112, good));     // the truth
            dev.Play();
            Assert.Equal(good, drv.Receive().Frame);
            Assert.Equal(3, drv.RxErrors);
            // Every buffer went back: the ring is full again.
            Assert.Equal(0, drv.Device.Queue(0).FreeDescriptors);
        }
        rig.AssertNoLeaks();
    }
}
