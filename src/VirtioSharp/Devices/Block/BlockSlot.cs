using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices.Block;

/// <summary>One request of a <see cref="BlockDevice{TMem}"/> queue while its storage I/O is in flight.</summary>
internal struct BlockSlot<TMem> where TMem : struct, IDeviceMemory
{
    public DescriptorChain? Chain;
    public DeviceQueue<TMem>? Queue;
    /// <summary>Device address of the status byte (written at completion, translated then).</summary>
    public ulong StatusAddr;
    /// <summary>Storage requests not yet completed (DISCARD / WRITE_ZEROES: one per segment).</summary>
    public int Outstanding;
    /// <summary>The first errno a storage request reported (0: none).</summary>
    public int Error;
    /// <summary>Token of the direct-I/O bracket (<see cref="DeviceContext{TMem}.BeginDirectIo"/>), -1 if none.</summary>
    public int FenceToken;
    public BlockOp Op;
    /// <summary>Stopwatch timestamp when the request was taken (0: not timed; see <see cref="BlockDeviceMetrics"/>).</summary>
    public long Started;
    public ulong Bytes;
    /// <summary>The request went through <see cref="Bounce"/> and is a read: copy it to the chain at completion.</summary>
    public bool BounceToGuest;
    /// <summary>Host vectors handed to the storage (pinned: valid while the I/O runs); grown on demand.</summary>
    public IoVec[]? Vectors;
    /// <summary>The copy path's buffer (pinned), for memory that cannot be handed out or too many pieces.</summary>
    public byte[]? Bounce;
}
