using Microsoft.Extensions.Logging;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The connection side of vhost-user: reads each message whole (header, then a payload bounded by
/// <see cref="VhostHeader.MaxPayload"/>, with its fds), checks the version, hands it to the handler and closes every
/// fd the handler did not keep. A malformed message or a protocol error ends the connection with a log line.
/// </summary>
internal sealed class VhostMessageLoop(FdSocket socket, ILogger log, VhostStats stats)
{
    /// <summary>Handles one message; returns true if it sent a reply itself.</summary>
    public delegate bool Handler(in VhostMessage message);

    /// <summary>Serves messages until the front-end disconnects or breaks the protocol.</summary>
    public void Run(Handler handle, Action<VhostRequest> ack)
    {
        Span<byte> hb = stackalloc byte[VhostHeader.Length];
        var payload = new byte[VhostHeader.MaxPayload];
        var fds = new List<SafeFd>();
        var kept = new HashSet<SafeFd>();
        try
        {
            while (true)
            {
                fds.Clear();
                VhostRequest req = default;
                try
                {
                    // Inside the try: a header whose control data was truncated still delivered fds, closed below.
                    if (!socket.ReceiveExact(hb, fds)) { log.LogInformation("front-end closed the connection"); return; }
                    var h = VhostHeader.Parse(hb);
                    req = (VhostRequest)h.Request;
                    if ((h.Flags & VhostHeader.VersionMask) != VhostHeader.Version)
                        throw new VhostProtocolException($"{req}: header version {h.Flags & VhostHeader.VersionMask}, expected 1");
                    if (h.Size > VhostHeader.MaxPayload)
                        throw new VhostProtocolException($"{req}: payload size {h.Size} exceeds the maximum {VhostHeader.MaxPayload}");
                    try
                    {
                        if (h.Size > 0 && !socket.ReceiveExact(payload.AsSpan(0, (int)h.Size), null))
                            throw new VhostProtocolException($"{req}: connection closed before the payload");
                    }
                    catch (EndOfStreamException e)
                    {
                        throw new VhostProtocolException($"{req}: connection closed inside the {h.Size}-byte payload ({e.Message})");
                    }
                    stats.Messages++;
                    if (log.IsEnabled(LogLevel.Trace)) log.LogTrace("message {Request}: {Size} bytes, {Fds} fds, flags 0x{Flags:x}", req, h.Size, fds.Count, h.Flags);
                    bool replied = handle(new VhostMessage(h, payload.AsSpan(0, (int)h.Size), fds, kept));
                    if (!replied && h.NeedReply) ack(req);
                }
                finally
                {
                    // Whatever the handler did not take ownership of is closed here, on every path.
                    foreach (var fd in fds) if (!fd.IsClosed && !kept.Contains(fd)) fd.Dispose();
                    kept.Clear();
                }
            }
        }
        catch (VhostProtocolException e)
        {
            stats.ProtocolErrors++;
            log.LogError("closing the connection: {Reason}", e.Message);
        }
        catch (EndOfStreamException e)
        {
            log.LogWarning("front-end went away mid-message: {Reason}", e.Message);
        }
        catch (IOException e)
        {
            log.LogWarning("connection error: {Reason}", e.Message);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A refusal is a VhostProtocolException; anything else is a handler bug, still only this connection's end.
            Interlocked.Increment(ref stats.HandlerFaults);
            log.LogError(e, "closing the connection: internal error handling a message (a bug; please report it)");
        }
    }
}
