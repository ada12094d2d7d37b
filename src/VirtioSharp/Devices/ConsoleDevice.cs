using System.Buffers.Binary;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>
/// virtio-console (virtio 1.2 §5.3) with one port: receiveq (0) carries host input to the driver, transmitq (1) driver
/// output to the host. Config: cols, rows (VIRTIO_CONSOLE_F_SIZE). Input may be typed from any thread: it is queued
/// and delivered on receiveq's owner thread (<see cref="DeviceContext{TMem}.Wake"/>), never by the typing thread.
/// </summary>
public sealed class ConsoleDevice<TMem>(bool legacyOnly = false, ushort cols = 80, ushort rows = 25, bool offerAccessPlatform = false, ushort maxQueueSize = 64)
    : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    private readonly ByteQueue _input = new();
    private readonly List<byte> _output = new();
    private readonly byte[] _rxScratch = new byte[4096];   // receiveq's owner thread
    private readonly byte[] _txScratch = new byte[4096];   // transmitq's owner thread
    private readonly QueueService<TMem> _rx = new(maxQueueSize), _tx = new(maxQueueSize);
    private volatile DeviceContext<TMem>? _ctx;
    private long _delivered;

    /// <inheritdoc/>
    public DeviceId DeviceId => DeviceId.Console;
    /// <inheritdoc/>
    public ulong DeviceFeatures => (legacyOnly ? 0 : VirtioFeature.Bit(VirtioFeature.Version1) | (offerAccessPlatform ? VirtioFeature.Bit(VirtioFeature.AccessPlatform) : 0)) |
        VirtioFeature.Bit(ConsoleFeature.Size) | VirtioFeature.Bit(VirtioFeature.EventIdx);
    /// <inheritdoc/>
    public int QueueCount => 2;
    /// <inheritdoc/>
    public ushort MaxQueueSize => maxQueueSize;
    /// <inheritdoc/>
    public int ConfigSize => 12;
    /// <summary>Everything the driver has written so far.</summary>
    public byte[] Output { get { lock (_output) return _output.ToArray(); } }
    /// <summary>Input bytes typed but not yet delivered.</summary>
    public int PendingInput => _input.Count;
    /// <summary>Input bytes delivered into driver buffers.</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        Span<byte> c = stackalloc byte[12];
        c.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(c, cols);
        BinaryPrimitives.WriteUInt16LittleEndian(c[2..], rows);
        BinaryPrimitives.WriteUInt32LittleEndian(c[4..], 1);   // max_nr_ports
        c.Slice(offset, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }   // emerg_wr not offered
    /// <inheritdoc/>
    public bool AcceptFeatures(ulong features, out string? reason) { reason = null; return true; }
    /// <inheritdoc/>
    public void Activate(DeviceContext<TMem> context) => _ctx = context;
    /// <inheritdoc/>
    public void Reset() { _ctx = null; _input.Clear(); }

    /// <summary>Any thread: the host typed something; it reaches the driver's receive buffers from receiveq's owner thread.</summary>
    public void Type(ReadOnlySpan<byte> text)
    {
        _input.Enqueue(text);
        _ctx?.Wake(0);
    }

    /// <inheritdoc/>
    public void QueueNotify(int queue)
    {
        if (_ctx is not { } ctx) return;
        if (queue == 0)
        {
            var rx = new Receive(this);
            _rx.Run(ctx, 0, ref rx);
        }
        else if (queue == 1)
        {
            var tx = new Transmit(this);
            _tx.Run(ctx, 1, ref tx);
        }
    }

    private readonly struct Receive(ConsoleDevice<TMem> d) : IChainHandler<TMem>
    {
        public bool Ready => d._input.Count > 0;

        public uint Handle(DeviceQueue<TMem> q, DescriptorChain chain)
        {
            var writer = new ChainWriter<TMem>(q.Memory, chain);
            int room = (int)Math.Min(chain.WritableBytes, (ulong)d._rxScratch.Length);
            int n = d._input.Dequeue(d._rxScratch.AsSpan(0, room));
            writer.Write(d._rxScratch.AsSpan(0, n), out _);
            Interlocked.Add(ref d._delivered, writer.Written);
            return writer.Written;
        }
    }

    private readonly struct Transmit(ConsoleDevice<TMem> d) : IChainHandler<TMem>
    {
        public bool Ready => true;

        public uint Handle(DeviceQueue<TMem> q, DescriptorChain chain)
        {
            var reader = new ChainReader<TMem>(q.Memory, chain);
            ulong left = chain.ReadableBytes;
            while (left > 0)
            {
                int n = (int)Math.Min(left, (ulong)d._txScratch.Length);
                if (reader.Read(d._txScratch.AsSpan(0, n), out int got) != MemStatus.Ok || got == 0) break;
                lock (d._output) d._output.AddRange(d._txScratch.AsSpan(0, got));
                left -= (ulong)got;
            }
            return 0;
        }
    }
}
