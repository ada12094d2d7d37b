using VirtioSharp.Interop;
namespace VirtioSharp.VhostUser.Interop;

/// <summary>The peer broke the vhost-user protocol; the message says how.</summary>
internal sealed class VhostProtocolException(string message) : Exception(message);
